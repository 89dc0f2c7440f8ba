// Talks to the server's /api/dashboard endpoints: one fetch helper that turns every failure
// into an ApiFailure the banner can show, and a poller that never overlaps its own requests.

export class ApiFailure extends Error {
  constructor(message, { status = null, unreachable = false } = {}) {
    super(message);
    this.status = status;
    this.unreachable = unreachable;
  }
}

// GET `path` as JSON; an ApiFailure when the server cannot be reached or answers an error.
export async function getJson(path, { signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      signal,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiFailure("the server cannot be reached", { unreachable: true });
  }
  if (response.status === 401) {
    // The session cookie expired or the token changed: the login form sets it again.
    window.location.assign("/login");
    throw new ApiFailure("not signed in", { status: 401 });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const first = body && Array.isArray(body.errors) ? body.errors[0] : null;
    const message = first ? first.message : `${response.status} ${response.statusText}`;
    throw new ApiFailure(message, { status: response.status });
  }
  if (body === null) {
    throw new ApiFailure(`${path} answered something other than JSON`, {
      status: response.status,
    });
  }
  return body;
}

// Calls `tick(signal)` every `intervalMs` after the previous call settled (a slow server is
// never asked twice at once), until stop(). `onResult(error)` hears each outcome (null: ok).
export class Poller {
  constructor(intervalMs, tick, onResult) {
    this.intervalMs = intervalMs;
    this.tick = tick;
    this.onResult = onResult;
    this.timer = null;
    this.controller = null;
    this.stopped = false;
  }

  start() {
    this.run();
    return this;
  }

  async run() {
    if (this.stopped) return;
    this.controller = new AbortController();
    let failure = null;
    try {
      await this.tick(this.controller.signal);
    } catch (error) {
      if (error.name === "AbortError") return;
      failure = error;
    }
    if (this.stopped) return;
    this.onResult(failure);
    this.timer = setTimeout(() => this.run(), this.intervalMs);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }
}
