"""Reading and driving machines: the `Host` protocol and the local host (`host`),
the same over SSH (`ssh_host`), parsers of /proc and /sys (`procfs`), consoles and
their markers (`console`, `iohub`), the offline image pair (`images`, `rootfs`) and
the clock a run reads (`clock`: injected, so runner tests are exact). Facts only: no
statistics. The engines themselves are `bench.backends`; what is measured on them,
`bench.measurements`."""
