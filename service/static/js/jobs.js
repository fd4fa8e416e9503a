// The jobs list: newest first, filtered by state and kind, every card live.

import { api, query } from "./api.js";
import { JobCard, isActive } from "./jobcard.js";
import { follow } from "./live.js";
import { bulkBar } from "./bulk.js";
import { clear, h, problemText } from "./ui.js";

export const STATES = ["queued", "running", "pausing", "paused", "terminating", "undoing", "completed", "terminated", "undone", "failed"];
export const KINDS = ["import", "export", "teams"];
const ACTIVE_FILTER = ["queued", "running", "pausing", "paused", "terminating", "undoing"];
const PAGE = 25;
const REFRESH_MS = 2000;
// A browser opens at most six connections to one host over HTTP/1.1; a
// download, the list refresh and a button press need theirs too.
const MAX_STREAMS = 3;

function stateQuery(state) {
  if (state === "active") return ACTIVE_FILTER.filter((s) => STATES.includes(s)).join(",");
  return state;
}

/** The API path of one page of the list, from the view's filters. */
export function listPath({ state = "", kind = "" }, before) {
  return `/api/v1/jobs${query({ state: stateQuery(state), kind, limit: PAGE, before })}`;
}

function filters(params, onChange) {
  const state = h(
    "select",
    { id: "filter-state", name: "state", onchange: onChange },
    h("option", { value: "" }, "All states"),
    h("option", { value: "active" }, "Active (not finished)"),
    STATES.map((s) => h("option", { value: s }, s)),
  );
  const kind = h(
    "select",
    { id: "filter-kind", name: "kind", onchange: onChange },
    h("option", { value: "" }, "All kinds"),
    KINDS.map((k) => h("option", { value: k }, k)),
  );
  state.value = params.get("state") || "";
  kind.value = params.get("kind") || "";
  return {
    state,
    kind,
    el: h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter jobs", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "filter-state" }, "State"),
      state,
      h("label", { for: "filter-kind" }, "Kind"),
      kind,
    ),
  };
}

export function jobsView(root, { me, params, signal }) {
  const cards = new Map();
  const streams = new Map();
  const list = h("div", { class: "job-list", "aria-live": "off" });
  const empty = h("p", { class: "empty", hidden: true }, "No jobs match these filters.");
  const problem = h("p", { class: "problem", role: "alert", hidden: true });
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => loadMore() }, "Load more");
  let next = null;
  let extra = []; // jobs of further pages the person asked for

  const form = filters(params, () => {
    const search = query({ state: form.state.value, kind: form.kind.value });
    location.hash = `#/jobs${search}`;
  });
  const create = me.can.create
    ? h(
        "p",
        { class: "create" },
        h("a", { class: "button", href: "#/new/import" }, "New import"),
        h("a", { class: "button", href: "#/new/teams" }, "New teams job"),
        h("a", { class: "button", href: "#/new/export" }, "New export"),
      )
    : null;
  // The list's filter, as a bulk request's filter (service/api/bulk.py).
  const bulkFilter = () => {
    const filter = {};
    const state = stateQuery(form.state.value);
    if (state) filter.state = state.split(",");
    if (form.kind.value) filter.kind = [form.kind.value];
    return filter;
  };
  const bulk = me.can.control ? bulkBar({ filter: bulkFilter, onDone: () => refresh() }) : null;
  clear(root, h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Jobs"), create), form.el, bulk && bulk.el, problem, list, empty, more);

  const path = (before) => listPath({ state: form.state.value, kind: form.kind.value }, before);

  function cardFor(job) {
    let card = cards.get(job.id);
    if (card) card.update(job);
    else {
      card = new JobCard(job, { me });
      cards.set(job.id, card);
      if (bulk) bulk.attach(card);
    }
    return card;
  }

  function show(jobs) {
    const wanted = jobs.map((job) => cardFor(job).el);
    const same = wanted.length === list.children.length && wanted.every((el, i) => list.children[i] === el);
    if (!same) list.replaceChildren(...wanted);
    empty.hidden = wanted.length > 0;
    for (const id of [...cards.keys()]) {
      if (jobs.some((j) => j.id === id)) continue;
      cards.delete(id);
      if (bulk) bulk.forget(id);
    }
    stream(jobs);
  }

  // Live bars for the newest active jobs; the others follow the list refresh.
  function stream(jobs) {
    for (const job of jobs.filter(isActive)) {
      if (streams.size >= MAX_STREAMS) break;
      if (streams.has(job.id)) continue;
      const controller = new AbortController();
      signal.addEventListener("abort", () => controller.abort());
      streams.set(job.id, controller);
      follow(job.id, (fresh) => cards.get(fresh.id)?.update(fresh), controller.signal).finally(() => {
        streams.delete(job.id);
      });
    }
    for (const [id, controller] of streams) {
      if (!cards.has(id)) controller.abort();
    }
  }

  async function refresh() {
    try {
      const page = await api("GET", path(), { signal });
      if (extra.length === 0) next = page.next;
      problem.hidden = true;
      const seen = new Set(page.jobs.map((j) => j.id));
      show([...page.jobs, ...extra.filter((j) => !seen.has(j.id))]);
      more.hidden = !next;
    } catch (error) {
      if (signal.aborted) return;
      problem.textContent = problemText(error);
      problem.hidden = false;
    }
  }

  async function loadMore() {
    if (!next) return;
    const before = new URL(next, location.origin).searchParams.get("before");
    const page = await api("GET", path(before), { signal });
    extra = [...extra, ...page.jobs];
    next = page.next;
    await refresh();
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
