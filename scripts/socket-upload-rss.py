#!/usr/bin/env python3
"""RSS of a `chat` process while one socket sends one `send_file` frame: before, at peak, after, and
once the socket has closed. Standard library only (a raw WebSocket client).

    cargo build -p bootstrap --bin chat
    scripts/socket-upload-rss.py target/debug/chat 31000000
"""
import base64, json, os, socket, struct, subprocess, sys, tempfile, threading, time, urllib.request

BIN, SIZE = sys.argv[1], int(sys.argv[2])
port = 18000 + os.getpid() % 1000
data = tempfile.mkdtemp()
env = dict(os.environ, CHAT_ADDR=f"127.0.0.1:{port}", CHAT_DATA_DIR=data, CHAT_LOG="warn")
proc = subprocess.Popen([BIN], env=env)
base = f"http://127.0.0.1:{port}"

def call(path, body, token=None):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    return json.load(urllib.request.urlopen(req))

def rss_kib():
    for line in open(f"/proc/{proc.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

for _ in range(100):
    try:
        urllib.request.urlopen(base + "/health/live"); break
    except Exception:
        time.sleep(0.1)
call("/auth/register", {"username": "memuser", "password": "correct horse battery staple"})
token = call("/auth/login", {"username": "memuser", "password": "correct horse battery staple"})["access_token"]
room = call("/rooms", {"name": "r", "visibility": "private", "member_ids": []}, token)["id"]

s = socket.create_connection(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
assert b" 101 " in buf.split(b"\r\n")[0], buf

def read_frame():
    global buf
    buf = buf.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in buf and buf.startswith(b"HTTP") else buf
    while len(buf) < 2:
        buf += s.recv(65536)
    n = buf[1] & 0x7F; off = 2
    if n == 126:
        while len(buf) < 4: buf += s.recv(65536)
        n = struct.unpack(">H", buf[2:4])[0]; off = 4
    elif n == 127:
        while len(buf) < 10: buf += s.recv(65536)
        n = struct.unpack(">Q", buf[2:10])[0]; off = 10
    while len(buf) < off + n:
        buf += s.recv(65536)
    payload, buf = buf[off:off + n], buf[off + n:]
    return payload

print("ready:", read_frame()[:40])
time.sleep(0.5)
before = rss_kib()
peak = [before]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_kib()); time.sleep(0.002)
t = threading.Thread(target=sample); t.start()

header = json.dumps({"type": "send_file", "room_id": room, "client_msg_id": "m1", "name": "big.bin"}).encode()
body = struct.pack(">I", len(header)) + header + bytes(SIZE)
frame = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", len(body)) + b"\0\0\0\0" + body
s.sendall(frame)
while True:
    f = read_frame()
    if b'"ack"' in f or b'"error"' in f:
        print("answer:", f[:80]); break
time.sleep(0.3)
done.set(); t.join()
after = rss_kib()
print(f"RSS before {before/1024:.1f} MiB, peak {peak[0]/1024:.1f} MiB (+{(peak[0]-before)/1024:.1f}), after {after/1024:.1f} MiB (+{(after-before)/1024:.1f})")
s.close(); time.sleep(1.0)
print(f"after the socket closed {rss_kib()/1024:.1f} MiB")
proc.terminate(); proc.wait()
