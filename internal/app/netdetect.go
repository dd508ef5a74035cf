package app

import (
	"fmt"
	"net"
	"os"
)

// unspecified reports a listen host that names no particular address.
func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// addrsIn lists this host's interface addresses inside subnet, in
// interface order (upstream's fetch_local_ipaddrs).
func addrsIn(subnet *net.IPNet) []net.IP {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []net.IP
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && subnet.Contains(ipn.IP) {
				out = append(out, ipn.IP)
			}
		}
	}
	return out
}

// detectHost picks the address others should dial, as the Python agent
// does when a host is not configured: the first local address inside the
// etcd subnet hint (config/network/subnet/{agent,container}; an error when
// none is), else fallback, else the address the host name resolves to,
// else 127.0.0.1.
func detectHost(subnetHint, fallback string) (string, error) {
	if subnetHint != "" {
		_, subnet, err := net.ParseCIDR(subnetHint)
		if err != nil {
			return "", fmt.Errorf("subnet hint %q: %w", subnetHint, err)
		}
		if ones, _ := subnet.Mask.Size(); ones > 0 {
			if ips := addrsIn(subnet); len(ips) > 0 {
				return ips[0].String(), nil
			}
			return "", fmt.Errorf("no local address is in the subnet %s", subnetHint)
		}
	}
	if !unspecified(fallback) {
		return fallback, nil
	}
	if name, err := os.Hostname(); err == nil {
		if ips, err := net.LookupIP(name); err == nil {
			for _, ip := range ips {
				if ip.To4() != nil {
					return ip.String(), nil
				}
			}
		}
	}
	return "127.0.0.1", nil
}

// detectRegion is [agent] region, else $BACKEND_REGION, else "local", as
// upstream's identity module answers on a host that is not a known cloud
// instance. (Cloud metadata endpoints are not queried.)
func detectRegion(configured string) string {
	if configured != "" {
		return configured
	}
	if r := os.Getenv("BACKEND_REGION"); r != "" {
		return r
	}
	return "local"
}
