"""The VM lab: Debian VMs under QEMU with systemd and kernel WireGuard, deployed by site.yml
(`image` builds and caches the disk image, `machines` runs the VMs on a bridge of this machine,
`python -m testbed.vmlab` is its command line)."""
