"""The VM test's guest: Debian's kernel and a debootstrap root of a Debian
release (bookworm or trixie) packed as an initramfs (docs/vm-test.md).

Cached under CACHE between runs, each part behind a stamp naming what it was
built from: the kernel package, the root's release and packages and this
recipe. Our own build is never cached: every run packs the Debian packages
`make deb` built (installed by the test itself, in the guest) and the guest's
scripts as a second cpio archive the kernel unpacks over the first."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("SWIFTCCID_VM_CACHE", "/var/tmp/swiftccid-vm")
# Bump when the recipe below changes what lands in the cached parts.
RECIPE = "8"
RELEASES = ("bookworm", "trixie")
PACKAGES = ["systemd", "systemd-sysv", "udev", "kmod", "procps", "pcscd", "pcsc-tools", "opensc", "python3-pyscard",
            "libccid", "libusb-1.0-0", "libumockdev0", "libnss3-tools", "passwd"]
# trixie's pcscd.service Requires=polkit.service; polkitd needs the system bus and a logind.
EXTRA_PACKAGES = {"bookworm": [], "trixie": ["polkitd", "dbus", "libpam-systemd"]}
DEBS = os.path.join(ROOT, "build", "deb")
HOST_PACKAGES = ["qemu-system-x86", "debootstrap", "cpio"]
# Units a test VM does not need; masking them saves seconds of boot under TCG.
MASKED = ["getty.target", "getty@.service", "serial-getty@.service", "apt-daily.timer", "apt-daily-upgrade.timer",
          "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "dpkg-db-backup.timer", "logrotate.timer",
          "man-db.timer", "systemd-tmpfiles-clean.timer", "systemd-timesyncd.service", "remote-fs.target",
          "systemd-networkd.service", "networking.service", "systemd-logind.service", "cryptsetup.target",
          "systemd-journal-flush.service", "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
          ]


def log(message):
    print("vm-image: " + message, file=sys.stderr, flush=True)


def run(argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(argv, **kw)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def host_packages():
    missing = [p for p in HOST_PACKAGES
               if "install ok installed" not in subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                                                               capture_output=True, text=True).stdout]
    if missing:
        log("installing " + " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing, env=env,
                          capture_output=True).returncode != 0:
            run(["apt-get", "update", "-q"], capture_output=True)
            run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing, env=env, capture_output=True)


def debian_mirror():
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        for line in (read(path) or "").splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
            if line.startswith("deb ") and "debian" in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def kernel_package():
    out = run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-") and line.endswith("-amd64"):
            return line.split()[1]
    raise RuntimeError("apt-cache knows no linux-image-amd64 dependency (run apt-get update)")


def kernel():
    """Debian's kernel image and only the modules the guest needs: USB host,
    gadget (dummy_hcd, libcomposite, FunctionFS) and configfs."""
    package = kernel_package()
    where = os.path.join(CACHE, "kernel")
    if read(os.path.join(where, ".stamp")) == package:
        return where
    log("fetching " + package)
    shutil.rmtree(where, ignore_errors=True)
    os.makedirs(where)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        run(["apt-get", "download", package], cwd=tmp, capture_output=True)
        deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        run(["tar", "-x", "-C", where, "--wildcards", "./boot/vmlinuz-*", "./boot/config-*",
             "./lib/modules/*/kernel/drivers/usb", "./lib/modules/*/kernel/fs/configfs",
             "./lib/modules/*/modules.order", "./lib/modules/*/modules.builtin*"], stdin=tar.stdout)
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError("cannot unpack " + deb)
    write(os.path.join(where, ".stamp"), package)
    return where


def kernel_release(kdir):
    return os.listdir(os.path.join(kdir, "lib/modules"))[0]


def packages(release):
    return PACKAGES + EXTRA_PACKAGES[release]


def rootfs(release):
    where = os.path.join(CACHE, release, "rootfs")
    stamp = release + ":" + ",".join(packages(release))
    if read(os.path.join(where, ".swiftccid-stamp")) == stamp:
        return where
    log("debootstrap %s (about a minute)" % release)
    shutil.rmtree(where, ignore_errors=True)
    r = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(packages(release)), release, where,
             debian_mirror()], capture_output=True, text=True, timeout=1200, check=False)
    if r.returncode != 0:
        raise RuntimeError("debootstrap %s failed:\n%s" % (release, (r.stdout + r.stderr)[-3000:]))
    write(os.path.join(where, ".swiftccid-stamp"), stamp)
    return where


def nss_db(root):
    """Three self-signed certificates for QEMU's emulated card
    (ccid-card-emulated,backend=certificates), made with the guest root's
    certutil so the host needs no NSS tools."""
    db = os.path.join(root, "var/lib/swiftccid-vm/nssdb")
    if os.path.exists(os.path.join(db, "cert9.db")):
        return
    os.makedirs(db, exist_ok=True)
    inside = "/var/lib/swiftccid-vm/nssdb"
    run(["chroot", root, "certutil", "-N", "-d", "sql:" + inside, "--empty-password"], capture_output=True)
    for i in (1, 2, 3):
        noise = os.path.join(db, "noise")
        with open(noise, "wb") as f:
            f.write(os.urandom(64))
        run(["chroot", root, "certutil", "-S", "-d", "sql:" + inside, "-n", "cert%d" % i, "-s", "CN=SwiftCCID VM card %d" % i,
             "-x", "-t", "CT,C,C", "-k", "rsa", "-g", "2048", "-v", "120", "-z", inside + "/noise"], capture_output=True)
        os.unlink(noise)


def customise(root, kdir):
    """What makes the tree a quick-booting test guest."""
    release = kernel_release(kdir)
    modules = os.path.join(root, "lib/modules", release)
    shutil.rmtree(modules, ignore_errors=True)
    shutil.copytree(os.path.join(kdir, "lib/modules", release), modules)
    run(["chroot", root, "depmod", release])
    # The cached root is customised again when the recipe changes: start from no masks.
    for old in glob.glob(os.path.join(root, "etc/systemd/system/*")):
        if os.path.islink(old) and os.readlink(old) == "/dev/null":
            os.unlink(old)
    for unit in MASKED:
        link = os.path.join(root, "etc/systemd/system", unit)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink("/dev/null", link)
    # pcscd's units stay as the distribution ships them: socket-activated, --auto-exit, its sandbox.
    shutil.rmtree(os.path.join(root, "etc/systemd/system/pcscd.service.d"), ignore_errors=True)
    # pcscd logs at its own default level: with --info (PCSCD_ARGS in /etc/default/pcscd)
    # its auto-exit became racy under TCG. Its signal thread logs "Received signal" before
    # it sets the flag its main loop checks 1 ms after select() is interrupted; logging took
    # 65 ms, the main loop went back to select() and pcscd stayed up.
    write(os.path.join(root, "etc/machine-id"), "5c0e1d9a1b2c4d3e8f7a6b5c4d3e2f10\n")
    write(os.path.join(root, "etc/hostname"), "swiftccid-vm\n")
    write(os.path.join(root, "etc/fstab"), "")
    write(os.path.join(root, "etc/modprobe.d/swiftccid-vm.conf"), "options dummy_hcd num=4\n")
    write(os.path.join(root, "etc/modules-load.d/swiftccid-vm.conf"), "configfs\nlibcomposite\nusb_f_fs\ndummy_hcd\nxhci_pci\n")
    write(os.path.join(root, "etc/systemd/system/swiftccid-vm-agent.service"), """[Unit]
Description=SwiftCCID VM test agent on ttyS1
DefaultDependencies=no
After=systemd-udevd.service

[Service]
ExecStart=/usr/bin/python3 /usr/lib/swiftccid-vm/agent.py /dev/ttyS1
Restart=always

[Install]
WantedBy=sysinit.target
""")
    wants = os.path.join(root, "etc/systemd/system/sysinit.target.wants")
    os.makedirs(wants, exist_ok=True)
    link = os.path.join(wants, "swiftccid-vm-agent.service")
    if not os.path.lexists(link):
        os.symlink("/etc/systemd/system/swiftccid-vm-agent.service", link)
    # Size: nothing the tests read.
    for sub in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info", "var/cache/apt", "var/lib/apt/lists",
                "usr/lib/udev/hwdb.d", "usr/share/i18n"):
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
    nss_db(root)


def pack(tree, out):
    """An uncompressed newc cpio of `tree` (the kernel unpacks it faster than any compressed one under TCG)."""
    files = subprocess.run("cd '%s' && find . -mindepth 1 ! -name .swiftccid-stamp -print0" % tree, shell=True,
                           capture_output=True, check=True).stdout
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        run(["cpio", "--null", "-o", "-H", "newc", "--quiet"], cwd=tree, input=files, stdout=f)
    os.replace(tmp, out)


def base(release):
    """Kernel and the release's cached base archive; returns (vmlinuz, base.cpio)."""
    os.makedirs(CACHE, exist_ok=True)
    # The cache's layout before releases: one bookworm root at the top.
    for old in ("rootfs", "base.cpio", "base.cpio.stamp"):
        path = os.path.join(CACHE, old)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
    host_packages()
    kdir = kernel()
    root = rootfs(release)
    out = os.path.join(CACHE, release, "base.cpio")
    stamp = "%s|%s|%s|%s" % (read(os.path.join(kdir, ".stamp")), release, ",".join(packages(release)), RECIPE)
    if read(out + ".stamp") != stamp or not os.path.exists(out):
        log("customising and packing the guest root")
        customise(root, kdir)
        pack(root, out)
        write(out + ".stamp", stamp)
    vmlinuz = glob.glob(os.path.join(kdir, "boot/vmlinuz-*"))[0]
    return vmlinuz, out


def debs():
    """The binary packages of `make deb` (build/deb), debug symbols left out."""
    found = sorted(p for p in glob.glob(os.path.join(DEBS, "*.deb")) if "-dbgsym_" not in p)
    names = [os.path.basename(p).split("_")[0] for p in found]
    if names != ["ccid-sim", "swiftccid"]:
        raise RuntimeError("expected the ccid-sim and swiftccid packages in %s (make deb), found %s" % (DEBS, names))
    return found


def overlay(out):
    """Our Debian packages (the test installs them in the guest, as a user
    would), the guest's test scripts and the bench's load generator, as a
    second archive."""
    with tempfile.TemporaryDirectory(prefix="sccid-vm-overlay") as stage:
        lib = os.path.join(stage, "usr/lib/swiftccid-vm")
        os.makedirs(os.path.join(lib, "debs"))
        for deb in debs():
            shutil.copy(deb, os.path.join(lib, "debs"))
        for name in ("agent.py", "guest.py"):
            shutil.copy(os.path.join(HERE, name), lib)
        shutil.copy(os.path.join(ROOT, "tests/pcsc.py"), lib)
        # The bench's load generator, built here: the guest has libpcsclite but no compiler.
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libpcsclite"], capture_output=True, text=True,
                               check=True).stdout.split()
        run(["gcc", "-O2", "-Wall", "-Werror", "-o", os.path.join(lib, "loadgen"),
             os.path.join(ROOT, "tests/bench/loadgen.c")] + flags + ["-lpthread"])
        pack(stage, out)


if __name__ == "__main__":
    print(base(sys.argv[1] if len(sys.argv) > 1 else "bookworm"))
