# The python runtime's helper: one persistent namespace, requests on fd 3
# and events on fd 4 (4-byte big-endian length + JSON). Python >= 3.6,
# standard library only. Runs as the kernel user with the image's own
# interpreter.
import ast
import builtins
import getpass
import json
import os
import signal
import struct
import sys
import traceback

_rq = os.fdopen(3, "rb", 0)
_ev = os.fdopen(4, "wb", 0)
_SYNC = "\x1e\x1fBAI-SYNC\x1f\x1e"


def _read(n):
    b = b""
    while len(b) < n:
        c = _rq.read(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b


def _recv():
    (n,) = struct.unpack(">I", _read(4))
    return json.loads(_read(n).decode("utf-8"))


def _send(obj):
    b = json.dumps(obj).encode("utf-8")
    _ev.write(struct.pack(">I", len(b)) + b)


def _sync():
    # Marks the end of what was written so far on both streams; the
    # runner forwards everything before it, then acts on the next event.
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
            s.write(_SYNC)
            s.flush()
        except Exception:
            pass


def _ask(prompt, password):
    sys.stdout.write(str(prompt))
    _sync()
    _send({"op": "input", "password": password})
    return _recv().get("text", "")


def _input(prompt=""):
    return _ask(prompt, False)


def _getpass(prompt="Password: ", stream=None):
    return _ask(prompt, True)


builtins.input = _input
getpass.getpass = _getpass
signal.signal(signal.SIGINT, signal.default_int_handler)
_ns = {"__name__": "__main__", "__builtins__": builtins}


def _display(v):
    for meth, kind in (("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg")):
        f = getattr(v, meth, None)
        if callable(f):
            data = f()
            if data:
                import base64

                if isinstance(data, bytes):
                    data = base64.b64encode(data).decode("ascii")
                _sync()
                _send({"op": "media", "type": kind, "data": "data:%s;base64,%s" % (kind, data)})
                return
    f = getattr(v, "_repr_html_", None)
    if callable(f):
        html = f()
        if html:
            _sync()
            _send({"op": "html", "data": html})
            return
    sys.stdout.write(repr(v))


def _exec(code):
    tree = ast.parse(code, "<input>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<input>", "exec"), _ns)
    if last is not None:
        v = eval(compile(last, "<input>", "eval"), _ns)
        if v is not None:
            _ns["_"] = v
            _display(v)


def _print_exc():
    # The user's frames only: the helper's own (compiled from "<string>"
    # by -c: the request loop, _exec, _display) lead every traceback.
    et, ev, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
        tb = tb.tb_next
    traceback.print_exception(et, ev, tb)


def _complete(code):
    import re
    import rlcompleter

    m = re.search(r"[A-Za-z_][A-Za-z0-9_.]*$", code)
    if not m:
        return []
    text = m.group(0)
    c = rlcompleter.Completer(_ns)
    out, i = [], 0
    while i < 200:
        s = c.complete(text, i)
        if s is None:
            break
        s = s.rstrip(" (")
        if s not in out:
            out.append(s)
        i += 1
    return out


while True:
    try:
        req = _recv()
    except EOFError:
        break
    except KeyboardInterrupt:
        continue
    op = req.get("op")
    if op == "exec":
        rc = 0
        try:
            _exec(req.get("code", ""))
        except SystemExit as e:
            if e.code is None:
                rc = 0
            elif isinstance(e.code, int):
                rc = e.code
            else:
                sys.stderr.write(str(e.code) + "\n")
                rc = 1
        except BaseException:
            _print_exc()
            rc = 1
        _sync()
        _send({"op": "done", "exitCode": rc})
    elif op == "complete":
        try:
            _send({"op": "completion", "suggestions": _complete(req.get("code", ""))})
        except BaseException:
            _send({"op": "completion", "suggestions": []})
