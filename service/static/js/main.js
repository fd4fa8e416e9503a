// The console's entry point: who is signed in, and which view the address shows.
// Views are addressed by the URL's fragment (#/jobs, #/jobs/ID, #/new/import,
// #/new/teams, #/new/export), so the service serves one page and no route of
// the page can collide with the API.

import { api, ApiError, onUnauthorized, prefetch, session } from "./api.js";
import { jobsView, listPath } from "./jobs.js";
import { clear, h, problemText } from "./ui.js";

// The jobs list is the first view; the other views load when first opened.
const views = {
  job: () => import("./job.js").then((m) => m.jobView),
  import: () => import("./uploads.js").then((m) => m.importView),
  teams: () => import("./uploads.js").then((m) => m.teamsView),
  export: () => import("./export.js").then((m) => m.exportView),
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const WRITERS = new Set(["operator", "admin", "support"]);

let me = null;
let view = null; // the AbortController of the view on screen
let signingIn = false;

/**
 * The caller, from GET /api/v1/me. A service without identities (no /me)
 * lets everyone do everything, so the console offers everything.
 */
async function whoAmI() {
  try {
    const body = await api("GET", "/api/v1/me");
    const write = WRITERS.has(body.role);
    return { ...body, can: { control: write, create: write } };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return { role: null, org_id: null, method: "none", can: { control: true, create: true } };
    }
    throw error;
  }
}

function showIdentity() {
  nav.hidden = !me;
  for (const link of nav.querySelectorAll("[data-create]")) link.hidden = !(me && me.can.create);
  if (!me) {
    clear(who);
    return;
  }
  const name = me.actor_name || me.actor;
  const parts = [me.org_id && `org ${me.org_id}`, name, me.role && `(${me.role})`].filter(Boolean);
  clear(
    who,
    h("span", { class: "identity" }, parts.join(" ") || "no sign-in needed"),
    session.token ? h("button", { type: "button", class: "link", onclick: signOut }, "Sign out") : null,
  );
}

function signOut() {
  session.clear();
  me = null;
  signIn("You are signed out.");
}

function signIn(message, tone = "info") {
  if (view) view.abort();
  view = null;
  me = null;
  showIdentity();
  const token = h("input", { id: "token", type: "password", name: "token", autocomplete: "off", required: true, spellcheck: false });
  const problem = h("p", { class: `notice ${tone}`, role: tone === "error" ? "alert" : "status", hidden: !message }, message || "");
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", tabindex: "-1" }, "Sign in"),
    problem,
    h("label", { for: "token" }, "API key or access token"),
    token,
    h("p", { class: "hint" }, "Kept in this browser tab only (session storage) and sent as a bearer header. Closing the tab forgets it."),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Sign in")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = token.value.trim().replace(/^Bearer\s+/i, "");
    if (!value) return token.focus();
    session.set(value);
    signingIn = true;
    try {
      me = await whoAmI();
      signingIn = false;
      showIdentity();
      route();
    } catch (error) {
      signingIn = false;
      session.clear();
      problem.className = "notice error";
      problem.setAttribute("role", "alert");
      problem.textContent = error.status === 401 ? "That key or token was not accepted." : problemText(error);
      problem.hidden = false;
      token.focus();
    }
  });
  clear(main, form);
  token.focus();
}

// Any 401 (an expired or revoked token) sends the person back to sign in;
// the address stays, so signing in again returns to the same view.
onUnauthorized(() => {
  if (signingIn) return; // the sign-in form reports it
  const had = Boolean(session.token);
  session.clear();
  if (me || had) signIn("Your sign-in has expired or was revoked. Sign in again.", "error");
});

function route() {
  if (!me) return;
  // Focus stays on the control that changed the address (a filter), or
  // moves to the new view's heading, so a keyboard user is never lost.
  const focused = document.activeElement && document.activeElement.id;
  if (view) view.abort();
  view = new AbortController();
  const { parts, params } = address();
  const ctx = { me, signal: view.signal, params };
  for (const link of nav.querySelectorAll("a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${parts.slice(0, 2).join("/")}`);
  }
  let shown;
  if (parts[0] === "jobs" && parts[1]) shown = show(views.job, { ...ctx, id: decodeURIComponent(parts[1]) });
  else if (parts[0] === "new" && views[parts[1]] && parts[1] !== "job" && me.can.create) shown = show(views[parts[1]], ctx);
  else shown = jobsView(main, ctx);
  Promise.resolve(shown).then(() => {
    if (document.activeElement !== document.body) return;
    const target = (focused && document.getElementById(focused)) || main.querySelector("h1");
    if (target) target.focus({ preventScroll: true });
  });
}

async function show(load, ctx) {
  const render = await load();
  if (!ctx.signal.aborted) return render(main, ctx);
}

function address() {
  const hash = location.hash.replace(/^#/, "") || "/jobs";
  const [path, search] = hash.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(search || "") };
}

async function start() {
  window.addEventListener("hashchange", route);
  const { parts, params } = address();
  // The list's first page is asked for alongside the identity, not after it.
  if (parts[0] === "jobs" && !parts[1]) prefetch(listPath(Object.fromEntries(params)));
  try {
    me = await whoAmI();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signIn(session.token ? "Your sign-in has expired or was revoked. Sign in again." : "");
    clear(main, h("h1", {}, "The service is not answering"), h("p", { class: "problem", role: "alert" }, problemText(error)));
    return;
  }
  showIdentity();
  route();
}

start();
