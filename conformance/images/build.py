#!/usr/bin/env python3
"""Build the small OCI test images rk3s' tests use, from Debian's busybox-static.

No docker, no network: layers are written with tarfile, manifests and configs
with json, and skopeo turns the OCI layout into oci-archive and docker-archive
files. The output is cached: a second run with the same script and the same
/bin/busybox does nothing.

Output directory: $RK3S_TEST_IMAGES, else <repo>/target/test-images.

  oci/                         one OCI image layout holding every image below,
                               each tagged by its ref name, e.g. rk3s-test/web:1
  archives/NAME_TAG.oci.tar    skopeo oci-archive (ref name docker.io/NAME:TAG)
  archives/NAME_TAG.docker.tar skopeo docker-archive (RepoTags NAME:TAG)
  refs.txt                     the ref names in oci/, one per line

Images:
  rk3s-test/busybox:latest  busybox with its applets in /bin, /bin/sh,
                            /etc/passwd and /etc/group with root and nobody
  rk3s-test/web:1, :2       busybox + /bin/serve: busybox httpd on :8080 whose
                            index says "rk3s-test web vN on <hostname>"; it
                            exits on SIGTERM, as nginx does
  rk3s-test/layers:1        two layers (gzip, zstd) exercising whiteouts,
                            opaque directories, hard links, xattrs, a fifo
  rk3s-test/multiarch:1     an image index: linux/arm64 first, linux/amd64
                            second; /arch in each says which one it is
"""

import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"
EPOCH = 1700000000  # fixed mtimes: the same input gives the same digests
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def out_dir():
    env = os.environ.get("RK3S_TEST_IMAGES")
    if env:
        return os.path.abspath(env)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(repo, "target", "test-images")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout being written: blobs plus the top-level index."""

    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        self.index = []

    def blob(self, data, media_type, extra=None):
        digest = sha256(data)
        with open(os.path.join(self.blobs, digest), "wb") as f:
            f.write(data)
        desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
        if extra:
            desc.update(extra)
        return desc

    def json_blob(self, obj, media_type, extra=None):
        return self.blob(json.dumps(obj, sort_keys=True).encode(), media_type, extra)

    def tag(self, desc, ref_name):
        entry = dict(desc)
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        self.index.append(entry)

    def finish(self):
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": self.index}, f)


class TarBuilder:
    """A deterministic layer tar, in PAX format (for xattrs)."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, kind, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = EPOCH
        return ti

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))

    def file(self, name, data, mode=0o644, uid=0, gid=0, xattrs=None):
        ti = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
        self.tar.addfile(ti, io.BytesIO(data))

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def hardlink(self, name, target):
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.tar.addfile(ti)

    def fifo(self, name, mode=0o600):
        self.tar.addfile(self._info(name, tarfile.FIFOTYPE, mode))

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def gzip_bytes(data):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as g:
        g.write(data)
    return out.getvalue()


def zstd_bytes(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def add_image(layout, layers, config, platform=None):
    """Write layer blobs, the config and the manifest; return the manifest descriptor.
    `layers` is a list of (uncompressed tar, compression)."""
    descs, diff_ids = [], []
    for raw, compression in layers:
        diff_ids.append("sha256:" + sha256(raw))
        if compression == "zstd":
            descs.append(layout.blob(zstd_bytes(raw), MT_LAYER_ZSTD))
        else:
            descs.append(layout.blob(gzip_bytes(raw), MT_LAYER_GZIP))
    arch, os_name = platform or ("amd64", "linux")
    cfg = {
        "architecture": arch,
        "os": os_name,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "conformance/images/build.py"}],
        "created": "2023-11-14T22:13:20Z",
    }
    cfg_desc = layout.json_blob(cfg, MT_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cfg_desc, "layers": descs}
    extra = {"platform": {"architecture": arch, "os": os_name}} if platform else None
    return layout.json_blob(manifest, MT_MANIFEST, extra)


def busybox_layer():
    t = TarBuilder()
    for d, mode in [("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777),
                    ("home", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755),
                    ("var", 0o755), ("usr", 0o755), ("usr/bin", 0o755)]:
        t.dir(d, mode)
    with open(BUSYBOX, "rb") as f:
        t.file("bin/busybox", f.read(), 0o755)
    applets = subprocess.run([BUSYBOX, "--list"], check=True, stdout=subprocess.PIPE,
                             text=True).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        t.symlink("bin/" + applet, "busybox")
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                         b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    t.file("etc/group", b"root:x:0:\nnobody:x:65534:\n")
    return t.bytes()


def web_layer(version):
    t = TarBuilder()
    t.dir("bin")
    script = (
        "#!/bin/sh\n"
        "# The test web server: answers every GET with its version and host name.\n"
        "mkdir -p /tmp/www\n"
        f'echo "rk3s-test web v{version} on $(hostname)" > /tmp/www/index.html\n'
        # Like nginx, stop at once on SIGTERM: as PID 1 without a handler,
        # httpd would ignore it and every deletion would wait out the grace
        # period.
        "httpd -f -p 8080 -h /tmp/www &\n"
        "trap 'kill $!; exit 0' TERM INT\n"
        "wait\n"
    )
    t.file("bin/serve", script.encode(), 0o755)
    return t.bytes()


def layers_image_layers():
    lower = TarBuilder()
    lower.dir("a")
    lower.file("a/x", b"x\n")
    lower.file("a/y", b"y\n")
    lower.file("b", b"b\n")
    lower.dir("keep")
    lower.file("keep/file", b"kept\n")
    lower.file("owned", b"owned by 1000\n", mode=0o640, uid=1000, gid=1000)
    upper = TarBuilder()
    upper.dir("a")
    upper.file("a/.wh..wh..opq", b"")
    upper.file("a/z", b"z\n")
    upper.file(".wh.b", b"")
    upper.file("h1", b"linked\n", mode=0o600)
    upper.hardlink("h2", "h1")
    upper.file("x", b"has xattr\n", xattrs={"user.rk3s": "yes"})
    upper.symlink("s", "h1")
    upper.fifo("p")
    return [(lower.bytes(), "gzip"), (upper.bytes(), "zstd")]


def arch_layer(arch):
    t = TarBuilder()
    t.file("arch", (arch + "\n").encode())
    return t.bytes()


def build(root):
    layout = Layout(os.path.join(root, "oci"))
    base = busybox_layer()
    busybox_cfg = {"Env": [PATH_ENV], "Cmd": ["sh"]}
    refs = []

    def tag(desc, ref):
        layout.tag(desc, ref)
        refs.append(ref)

    tag(add_image(layout, [(base, "gzip")], busybox_cfg), "rk3s-test/busybox:latest")
    for version in ("1", "2"):
        cfg = {"Env": [PATH_ENV], "Cmd": ["/bin/serve"], "ExposedPorts": {"8080/tcp": {}},
               "Labels": {"version": version}}
        tag(add_image(layout, [(base, "gzip"), (web_layer(version), "gzip")], cfg),
            f"rk3s-test/web:{version}")
    layers_cfg = {"Env": [PATH_ENV, "LAYERS=1"], "Entrypoint": ["/bin/true"],
                  "Cmd": ["-v"], "WorkingDir": "/a", "User": "1000:1000",
                  "StopSignal": "SIGINT"}
    tag(add_image(layout, layers_image_layers(), layers_cfg), "rk3s-test/layers:1")
    arm = add_image(layout, [(arch_layer("arm64"), "gzip")], {"Env": [PATH_ENV]},
                    platform=("arm64", "linux"))
    amd = add_image(layout, [(base, "gzip"), (arch_layer("amd64"), "gzip")],
                    {"Env": [PATH_ENV], "Cmd": ["cat", "/arch"]}, platform=("amd64", "linux"))
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [arm, amd]}
    tag(layout.json_blob(index, MT_INDEX), "rk3s-test/multiarch:1")
    layout.finish()

    archives = os.path.join(root, "archives")
    os.makedirs(archives, exist_ok=True)
    for ref in refs:
        name = ref.replace("rk3s-test/", "").replace(":", "_")
        oci = os.path.join(archives, name + ".oci.tar")
        skopeo(["copy", "--all", f"oci:{layout.root}:{ref}", f"oci-archive:{oci}:docker.io/{ref}"])
        # Docker archives hold one platform and no zstd layers.
        if "multiarch" not in ref and "layers" not in ref:
            docker = os.path.join(archives, name + ".docker.tar")
            skopeo(["copy", f"oci:{layout.root}:{ref}", f"docker-archive:{docker}:{ref}"])
    with open(os.path.join(root, "refs.txt"), "w") as f:
        f.write("".join(r + "\n" for r in refs))


def skopeo(args):
    subprocess.run(["skopeo", "--insecure-policy"] + args, check=True,
                   stdout=subprocess.DEVNULL)


def fingerprint():
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    with open(BUSYBOX, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main():
    root = out_dir()
    os.makedirs(os.path.dirname(root), exist_ok=True)
    # Tests run in parallel processes: one builds, the others wait for it.
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = os.path.join(root, ".stamp")
        want = fingerprint()
        try:
            with open(stamp) as f:
                if f.read().strip() == want:
                    print(root)
                    return 0
        except FileNotFoundError:
            pass
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        build(tmp)
        with open(os.path.join(tmp, ".stamp"), "w") as f:
            f.write(want + "\n")
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
