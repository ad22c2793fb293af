#!/usr/bin/env python3
"""The quick start's chat client: follows one room and sends each line of standard input to it.

    CHAT_TOKEN=<access token> python3 scripts/quickstart_client.py <room_id>

Needs `pip install websockets` (14 or later). It syncs the room from seq 0, then prints messages
live; other frames (presence, typing, members joining) print as JSON. At the end of its input
(Ctrl-D) it waits for the acks of what it sent, then exits: 1 if the server sent an error frame.
CHAT_URL is the server, http://127.0.0.1:8080 by default. See docs/quickstart.md.
"""
import asyncio, json, os, sys, threading, uuid

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus


async def chat(room_id: str) -> int:
    # ?resume: its first frame is a resume, so the server holds the room's messages until then.
    url = os.environ.get("CHAT_URL", "http://127.0.0.1:8080").replace("http", "ws", 1) + "/ws?resume"
    loop, lines, unacked, seen, failed = asyncio.get_running_loop(), asyncio.Queue(), set(), set(), False

    def read_input():  # a thread, so that waiting for a line never blocks the socket
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(lines.put_nowait, None)

    async def send_lines(ws):
        while (text := await lines.get()) is not None:
            if text:
                unacked.add(cid := str(uuid.uuid4()))  # a resend with the same id is stored once
                await ws.send(json.dumps({"type": "send", "room_id": room_id, "client_msg_id": cid, "text": text}))
        while unacked:
            await asyncio.sleep(0.05)
        await ws.close()

    async with connect(url, additional_headers={"Authorization": "Bearer " + os.environ["CHAT_TOKEN"]}) as ws:
        threading.Thread(target=read_input, daemon=True).start()
        sender = asyncio.create_task(send_lines(ws))
        # Everything after seq 0, then live: each message once, in order.
        await ws.send(json.dumps({"type": "resume", "rooms": {room_id: 0}}))
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind, m = frame["type"], frame.get("message")
                if kind == "ready":
                    print("connected as", frame["user"]["username"], flush=True)
                elif kind in ("message", "ack") and m["seq"] not in seen:  # an ack carries our own message
                    seen.add(m["seq"])
                    body = m.get("text") or f"[{m['kind']}] {m['file']['name']} {m['file']['url']}"
                    print(f"#{m['seq']} {m['sender']['username']}: {body}", flush=True)
                elif kind == "error":
                    failed = True
                    print("error:", json.dumps(frame), file=sys.stderr, flush=True)
                elif kind not in ("message", "ack", "synced", "pong"):
                    print(json.dumps(frame), flush=True)
                unacked.discard(frame.get("client_msg_id"))
        except ConnectionClosedError as e:  # e.g. 4001 token_expired: log in again
            print("closed:", e, file=sys.stderr)
            failed = True
        finally:
            sender.cancel()
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        sys.exit(asyncio.run(chat(sys.argv[1])))
    except InvalidStatus as e:  # refused before the upgrade: 401 bad token, 403 origin, 429 too many sockets
        sys.exit(f"refused: HTTP {e.response.status_code} {e.response.body.decode(errors='replace')}")
    except KeyboardInterrupt:
        pass
