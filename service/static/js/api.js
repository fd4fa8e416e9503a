// The console's only door to the service: the public HTTP API under /api/v1.
// The token lives in this tab's sessionStorage and travels as a bearer header;
// no cookies, so there is nothing for another site to forge a request with.

const TOKEN_KEY = "collect-jobs.token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let unauthorized = () => {};

/** Called with the problem whenever the service answers 401 (expired or revoked token). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

function authHeaders(extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  return headers;
}

async function problemOf(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { title: response.statusText, detail: text.slice(0, 300) };
  }
}

async function failed(response) {
  const problem = await problemOf(response);
  if (response.status === 401) unauthorized(problem);
  return new ApiError(response.status, problem);
}

const early = new Map();

/**
 * Starts a GET before the code that needs it is ready (the first view's list,
 * while the caller's identity is asked for); the next api("GET", path) takes it.
 */
export function prefetch(path) {
  early.set(path, api("GET", path).catch((error) => error));
}

/** A JSON request; resolves to the parsed body, rejects with ApiError. */
export async function api(method, path, { json, signal } = {}) {
  if (method === "GET" && early.has(path)) {
    const answer = await early.get(path);
    early.delete(path);
    if (answer instanceof Error) throw answer;
    return answer;
  }
  const init = { method, headers: authHeaders(), signal, cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failed(response);
  return response.status === 204 ? null : response.json();
}

/**
 * Server-sent events read with fetch(), because EventSource cannot send the
 * bearer header. Yields {event, data} with data parsed as JSON; ends with the
 * stream or when `signal` aborts.
 */
export async function* events(path, signal) {
  const response = await fetch(path, {
    headers: authHeaders({ Accept: "text/event-stream" }),
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw await failed(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/**
 * Sends a file as the multipart field `file` (which keeps its name) with
 * XMLHttpRequest, whose upload events give a progress bar while it streams
 * (fetch() has none). The browser reads the file from disk as it goes; it is
 * never loaded into the page.
 * Resolves to the parsed JSON answer and its status, rejects with ApiError.
 */
export function upload(path, file, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { title: xhr.statusText, detail: xhr.responseText.slice(0, 300) };
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve({ status: xhr.status, body });
      if (xhr.status === 401) unauthorized(body);
      reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { title: "Network error", detail: "The upload did not reach the service." }));
    xhr.onabort = () => reject(new ApiError(0, { title: "Cancelled", detail: "The upload was cancelled." }));
    if (signal) signal.addEventListener("abort", () => xhr.abort());
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
