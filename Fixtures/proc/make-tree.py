#!/usr/bin/env python3
"""Writes the fake /proc tree in ./host1 (ours: written by hand from proc(5), not copied from a
machine). Re-run after editing; the tree itself is committed."""
import os, shutil

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "host1")
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root + "/net")

HDR = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
HDR6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

def v4(a):  # dotted quad -> the kernel's %08X of the in-memory word (little-endian host)
    b = [int(x) for x in a.split(".")]
    return "%02X%02X%02X%02X" % (b[3], b[2], b[1], b[0])

def v6mapped(a):
    return "0000000000000000FFFF0000" + v4(a)

def row(i, local, remote, st, uid, inode):
    return "%4d: %s %s %02X 00000000:00000000 00:00000000 00000000 %5d        0 %d 1 0000000000000000 100 0 0 10 0\n" % (
        i, local, remote, st, uid, inode)

tcp = HDR
tcp += row(0, v4("0.0.0.0") + ":0050", "00000000:0000", 0x0A, 33, 1001)          # nginx listens on :80
tcp += row(1, v4("10.0.0.2") + ":0050", v4("10.0.0.9") + ":C738", 0x01, 33, 1002)  # nginx <- 10.0.0.9:51000
tcp += row(2, v4("10.0.0.2") + ":9C40", v4("10.0.0.5") + ":1538", 0x01, 1000, 2001)  # java -> 10.0.0.5:5432
tcp += row(3, v4("10.0.0.2") + ":9C41", v4("10.0.0.5") + ":1538", 0x06, 0, 0)        # TIME_WAIT, no owner
tcp += row(4, v4("127.0.0.1") + ":18EB", "00000000:0000", 0x0A, 0, 5001)              # redis on 127.0.0.1:6379
open(root + "/net/tcp", "w").write(tcp)

tcp6 = HDR6
tcp6 += row(0, "0" * 32 + ":20FB", "0" * 32 + ":0000", 0x0A, 1000, 4001)                  # envoy on [::]:8443
tcp6 += row(1, v6mapped("10.0.0.2") + ":20FB", v6mapped("10.0.0.7") + ":EA60", 0x01, 1000, 4002)  # <- 10.0.0.7:60000
tcp6 += row(2, "00000000000000000000000001000000:1F90", "0" * 32 + ":0000", 0x0A, 0, 5002)        # [::1]:8080
open(root + "/net/tcp6", "w").write(tcp6)

udp = HDR
udp += row(0, v4("0.0.0.0") + ":14E9", "00000000:0000", 0x07, 0, 3001)              # mdns responder on :5353
udp += row(1, v4("10.0.0.2") + ":8235", v4("10.0.0.1") + ":0035", 0x01, 0, 3002)    # connected to 10.0.0.1:53
open(root + "/net/udp", "w").write(udp)
open(root + "/net/udp6", "w").write(HDR6)

DOCKER = "4f2a" * 16
K8S = "9be1" * 16
POD = "1d5c8f4e-2b7a-4c1d-9e3f-a0b1c2d3e4f5"

procs = {
    100: dict(comm="nginx", exe="/usr/sbin/nginx", argv=["nginx: master process /usr/sbin/nginx", ""], uid=33,
              cgroup="0::/system.slice/nginx.service\n", fds={3: 1001, 4: 1002, 0: None}),
    200: dict(comm="java", exe="/usr/lib/jvm/java-17/bin/java", argv=["java", "-jar", "/app/payments.jar"], uid=1000,
              cgroup="0::/system.slice/docker-%s.scope\n" % DOCKER, fds={7: 2001}),
    300: dict(comm="python3", exe="/usr/bin/python3.11", argv=["python3", "agent.py", "--verbose"], uid=0,
              cgroup=("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/"
                      "cri-containerd-%s.scope\n") % (POD.replace("-", "_"), K8S), fds={5: 3001, 6: 3002}),
    400: dict(comm="envoy", exe="/usr/local/bin/envoy", argv=["envoy", "-c", "/etc/envoy.yaml"], uid=1000,
              cgroup="12:pids:/user.slice/user-1000.slice/user@1000.service/app.slice/envoy.service\n"
                     "1:name=systemd:/user.slice/user-1000.slice/user@1000.service/app.slice/envoy.service\n",
              fds={3: 4001, 9: 4002}),
    500: dict(comm="redis-server", exe="/usr/bin/redis-server", argv=["/usr/bin/redis-server 127.0.0.1:6379"], uid=0,
              cgroup="0::/system.slice/redis-server.service\n", fds={6: 5001}),
}
for pid, p in procs.items():
    d = "%s/%d" % (root, pid)
    os.makedirs(d + "/fd")
    open(d + "/comm", "w").write(p["comm"] + "\n")
    open(d + "/cmdline", "wb").write(b"\0".join(a.encode() for a in p["argv"]) + b"\0")
    open(d + "/status", "w").write("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t%d\nUid:\t%d\t%d\t%d\t%d\nGid:\t0\t0\t0\t0\n" % (
        p["comm"], pid, p["uid"], p["uid"], p["uid"], p["uid"]))
    # A command with a space and parentheses, as stat shows it; start time is field 22.
    fields = ["S", "1", str(pid), str(pid), "0", "-1", "4194560"] + ["0"] * 12 + [str(1000 + pid)] + ["0"] * 20
    open(d + "/stat", "w").write("%d (%s) %s\n" % (pid, p["comm"] + " (x)" if pid == 400 else p["comm"], " ".join(fields)))
    open(d + "/cgroup", "w").write(p["cgroup"])
    os.symlink(p["exe"], d + "/exe")
    for fd, inode in p["fds"].items():
        os.symlink("socket:[%d]" % inode if inode else "/dev/null", "%s/fd/%d" % (d, fd))
os.makedirs(root + "/self")  # not a pid: ignored by the scan

open(os.path.join(os.path.dirname(root), "passwd"), "w").write(
    "root:x:0:0:root:/root:/bin/bash\n# a comment\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
    "svc-pay:x:1000:1000::/home/svc-pay:/bin/sh\nshadow-root:x:0:0::/:/bin/sh\n")
