package accel

// hardwareFactories lists the plugins for real devices (cuda, rocm, tpu).
func hardwareFactories() []Factory { return nil }
