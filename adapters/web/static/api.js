// REST calls, and the session's tokens: refreshed before the access token expires.

/** An error answer of the API: `code` is what to switch on, `message` is for people. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** What to tell a person about a failed call. */
export function describe(err) {
  if (!(err instanceof ApiError)) return `Cannot reach the server (${err.message}).`;
  switch (err.code) {
    case 'invalid_credentials': return 'Wrong username or password.';
    case 'rate_limited': return `Too many attempts: try again in ${err.retryAfter || 'a few'} seconds.`;
    case 'busy': return 'The server is busy: try again in a moment.';
    case 'room_full': return 'The room is full.';
    case 'too_large': return 'The file is too large.';
    case 'quota_exceeded': return 'You have used up your storage quota.';
    case 'unknown_user': return 'No user has that name.';
    case 'already_member': return 'They are already in the room.';
    case 'session_revoked': return 'Your session has ended: log in again.';
    default: return err.message || `The server answered ${err.status}.`;
  }
}

// Per tab, so two tabs never spend the same single-use refresh token; a reload keeps it.
const STORE = 'chat.session';

export class Session {
  constructor(filesBase) {
    this.filesBase = filesBase;
    this.access = null;
    this.expiresAt = 0;
    this.margin = 0;
    this.refreshing = null;
    this.timer = null;
    this.onEnded = () => {};
    const saved = sessionStorage.getItem(STORE);
    this.refreshToken = saved ? JSON.parse(saved).refresh_token : null;
  }

  get signedIn() {
    return this.refreshToken !== null;
  }

  async register(username, password) {
    await this.request('POST', '/auth/register', { body: { username, password }, auth: false });
  }

  async login(username, password) {
    this.keep(await this.request('POST', '/auth/login', { body: { username, password }, auth: false }));
  }

  async logout() {
    try {
      await this.request('POST', '/auth/logout');
    } finally {
      this.forget();
    }
  }

  /** A valid access token, refreshed first when it is in the last fifth of its life. */
  async token() {
    if (this.access && Date.now() < this.expiresAt - this.margin) return this.access;
    return this.refresh();
  }

  /** One refresh at a time: a second caller waits for the first, as the token is single use. */
  refresh() {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        try {
          const body = { refresh_token: this.refreshToken };
          this.keep(await this.request('POST', '/auth/refresh', { body, auth: false }));
          return this.access;
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) this.end(describe(err));
          throw err;
        } finally {
          this.refreshing = null;
        }
      })();
    }
    return this.refreshing;
  }

  keep(tokens) {
    this.access = tokens.access_token;
    this.refreshToken = tokens.refresh_token;
    this.expiresAt = Date.now() + tokens.expires_in * 1000;
    this.margin = Math.min(60_000, tokens.expires_in * 200);
    sessionStorage.setItem(STORE, JSON.stringify({ refresh_token: this.refreshToken }));
    // Refresh at four fifths of the lifetime, so an idle tab's socket never meets an expired token.
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), tokens.expires_in * 800);
  }

  forget() {
    clearTimeout(this.timer);
    this.access = null;
    this.refreshToken = null;
    sessionStorage.removeItem(STORE);
  }

  end(why) {
    this.forget();
    this.onEnded(why);
  }

  /** A JSON call; retried once with a fresh token when the access token has just expired. */
  async request(method, path, { body, auth = true, base = '' } = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = {};
      if (auth) headers.Authorization = `Bearer ${await this.token()}`;
      let payload = body;
      if (body !== undefined && !(body instanceof FormData)) {
        headers['Content-Type'] = 'application/json';
        payload = JSON.stringify(body);
      }
      const resp = await fetch(base + path, { method, headers, body: payload });
      if (resp.ok) {
        const text = await resp.text();
        return text ? JSON.parse(text) : null;
      }
      const err = await asError(resp);
      if (auth && err.code === 'token_expired' && attempt === 0) {
        this.access = null;
        continue;
      }
      if (auth && err.code === 'session_revoked') this.end(describe(err));
      throw err;
    }
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body) {
    return this.request('POST', path, { body });
  }

  /** Uploads a file to a room through the file app; answers its `{id, url, …}`. */
  upload(roomId, file) {
    const form = new FormData();
    form.append('room_id', roomId);
    form.append('file', file, file.name);
    return this.request('POST', '/files', { body: form, base: this.filesBase });
  }

  /** A file's bytes, fetched with the bearer header so no token lands in a URL. */
  async fileBlob(url) {
    const resp = await fetch(this.filesBase + url, { headers: { Authorization: `Bearer ${await this.token()}` } });
    if (!resp.ok) throw await asError(resp);
    return resp.blob();
  }
}

async function asError(resp) {
  let body = {};
  try {
    body = await resp.json();
  } catch {
    // Not the API's JSON (a proxy's page, say): the status says enough.
  }
  return new ApiError(resp.status, body.code || 'http_' + resp.status, body.message, resp.headers.get('Retry-After'));
}
