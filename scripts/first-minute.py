#!/usr/bin/env python3
"""Times the README's first minute on this machine: `make run` in a clone, then
`bin/switchboard chat --user 1` and `--user 2` in two terminals (pseudo-terminals
here), user 2 opens the conversation with 1, user 1 opens it with 2 and sends a
line; it stops when user 2's screen shows the line and user 1's shows it
delivered (✓✓). Prints the time of each step from the start of `make run`.

    git clone <repo> /tmp/fm/repo
    GOMODCACHE=/tmp/fm/mod GOCACHE=/tmp/fm/cache GOFLAGS=-modcacherw \
        python3 scripts/first-minute.py /tmp/fm/repo   # empty caches: a fresh machine

It uses the default ports (7070, 9070): nothing else may listen there. It stops
the server and both clients it started.
"""
import os, pty, re, select, signal, subprocess, sys, time, urllib.request

repo = sys.argv[1]
env = dict(os.environ)
t0 = time.time()
def mark(what): print(f"{time.time()-t0:7.1f}s  {what}", flush=True)

srv = subprocess.Popen(["make", "run"], cwd=repo, env=env, stdout=open(os.path.join(repo, "run.log"),"w"), stderr=subprocess.STDOUT, start_new_session=True)
while True:
    try:
        if urllib.request.urlopen("http://127.0.0.1:9070/readyz", timeout=1).status == 200: break
    except Exception: pass
    if srv.poll() is not None: print(open(os.path.join(repo, "run.log")).read()); sys.exit(1)
    time.sleep(0.05)
mark("make run: server ready (/readyz 200)")
def spawn(user):
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(repo)
        os.environ["TERM"] = "xterm-256color"
        os.execv("bin/switchboard", ["bin/switchboard", "chat", "--user", str(user)])
    return pid, fd
screens = {}
def pump(fd, user, until, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        r,_,_ = select.select([fd],[],[],0.05)
        if r:
            try: data = os.read(fd, 65536)
            except OSError: break
            screens[user] = screens.get(user, b"") + data
        plain = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", screens.get(user,b"")).decode("utf-8","replace").replace("\u2588","")
        if until(plain): return True
    return False
p2, f2 = spawn(2)
p1, f1 = spawn(1)
ok = pump(f1, 1, lambda s: "caught up" in s) and pump(f2, 2, lambda s: "caught up" in s)
mark(f"two chats logged in (caught up: {ok})")
for ch in "/to 1\r":
    os.write(f2, ch.encode()); time.sleep(0.01)
for ch in "/to 2\r":
    os.write(f1, ch.encode()); time.sleep(0.01)
pump(f2, 2, lambda s: False, 0.2)
for ch in "hello from 1\r":
    os.write(f1, ch.encode()); time.sleep(0.01)
ok2 = pump(f2, 2, lambda s: "hello from 1" in s)
mark(f"user 2 sees the message: {ok2}")
ok3 = pump(f1, 1, lambda s: "✓✓" in s)
mark(f"user 1 sees it delivered (✓✓): {ok3}")
for p in (p1, p2): os.kill(p, signal.SIGTERM)
os.killpg(srv.pid, signal.SIGTERM)
srv.wait()
