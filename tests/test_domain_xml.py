import xml.etree.ElementTree as ET
from pathlib import Path

from bench.backends.libvirt_backend import METADATA_NS, domain_xml


def test_kernel_boot_domain():
    xml = domain_xml(
        "bench-r-vm-s0-0",
        "r",
        "vm",
        "tcg",
        256 * 2**20,
        2,
        kernel=(Path("/k/vmlinuz"), Path("/k/initrd"), "console=ttyS0"),
    )
    dom = ET.fromstring(xml)
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "bench-r-vm-s0-0"
    assert dom.find("memory").get("unit") == "KiB" and dom.findtext("memory") == "262144"
    assert dom.findtext("vcpu") == "2"
    assert dom.findtext("os/kernel") == "/k/vmlinuz"
    assert dom.findtext("os/initrd") == "/k/initrd"
    assert dom.findtext("os/cmdline") == "console=ttyS0"
    assert dom.find("devices/serial").get("type") == "pty"
    assert dom.find("devices/interface") is None  # no network unless asked
    meta = dom.find(f"metadata/{{{METADATA_NS}}}instance")
    assert meta.get("run_id") == "r" and meta.get("platform") == "vm"


def test_kvm_and_disk_and_network():
    dom = ET.fromstring(
        domain_xml("n", "r", "p", "kvm", 2**30, 1, disk=Path("/o/x.qcow2"), network="default")
    )
    assert dom.get("type") == "kvm"
    assert dom.find("os/boot").get("dev") == "hd"
    assert dom.find("devices/disk/source").get("file") == "/o/x.qcow2"
    assert dom.find("devices/interface/source").get("network") == "default"


def test_metacharacters_are_escaped_not_injected():
    evil = "</cmdline><devices><disk/></devices><cmdline>"
    dom = ET.fromstring(
        domain_xml("n", "r&<>", "p'\"", "tcg", 2**28, 1, kernel=(Path("/k"), None, evil))
    )
    assert dom.findtext("os/cmdline") == evil
    assert dom.find("os/initrd") is None
    assert len(dom.findall("devices")) == 1
    meta = dom.find(f"metadata/{{{METADATA_NS}}}instance")
    assert meta.get("run_id") == "r&<>" and meta.get("platform") == "p'\""
