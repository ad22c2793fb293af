// The WebSocket: reconnects with backoff, and says why it closed.

const REASONS = {
  going_away: 'the server is restarting',
  too_large: 'a frame was too large',
  too_slow: 'the connection was too slow',
  token_expired: 'the session token expired',
  logged_out: 'you logged out',
  token_reused: 'your session was revoked',
};

export class ChatSocket {
  /**
   * `token()` gives a valid access token; `onFrame(frame)` gets every server frame;
   * `onStatus(online, why)` hears the socket come and go; `onEnded(why)` that the session is over.
   */
  constructor(url, { token, onFrame, onStatus, onEnded }) {
    this.url = url;
    this.token = token;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onEnded = onEnded;
    this.ws = null;
    this.ready = false;
    this.stopped = false;
    this.offline = false;
    this.failures = 0;
    this.retry = null;
  }

  async connect() {
    clearTimeout(this.retry);
    if (this.stopped || this.offline) return;
    let token;
    try {
      token = await this.token();
    } catch {
      return this.later('cannot refresh the session');
    }
    // Browsers cannot set headers on a WebSocket: the token goes in the query (never logged).
    // `resume`: the first frame is a resume, so the server holds room messages until it comes.
    const ws = new WebSocket(`${this.url}?resume&access_token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (frame.type === 'ready') {
        this.ready = true;
        this.failures = 0;
        this.onStatus(true, '');
      }
      this.onFrame(frame);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = false;
      if (this.stopped) return;
      if (e.code === 4001 && e.reason !== 'token_expired') {
        this.stopped = true;
        return this.onEnded(`Disconnected: ${REASONS[e.reason] || e.reason}.`);
      }
      const why = REASONS[e.reason] || e.reason || (this.offline ? 'offline' : 'connection lost');
      // An expired token reconnects at once with a fresh one; anything else backs off.
      if (e.code === 4001) return this.connect();
      this.later(why);
    };
  }

  later(why) {
    this.onStatus(false, why);
    if (this.offline) return;
    this.failures += 1;
    const delay = Math.min(15_000, 500 * 2 ** Math.min(this.failures, 5));
    this.retry = setTimeout(() => this.connect(), delay);
  }

  /** Sends a frame when the socket is ready; false when it is not (the caller keeps it). */
  send(frame) {
    if (!this.ready || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Closes the socket and keeps it closed until `goOnline`, as a lost network would. */
  goOffline() {
    this.offline = true;
    clearTimeout(this.retry);
    if (this.ws) this.ws.close(1000, 'offline');
  }

  goOnline() {
    this.offline = false;
    this.failures = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    if (this.ws) this.ws.close(1000, 'bye');
  }
}
