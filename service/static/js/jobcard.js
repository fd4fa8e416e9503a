// One job's live summary: state, progress bar, rates, and the controls the
// person's role allows. Used by the jobs list and the job page; updated in
// place so keyboard focus stays on the button a person is using.

import { api, ApiError } from "./api.js";
import { count, bytes, duration, h, problemText, progressBar, time, toast } from "./ui.js";

// What the API's job carries only on GET (live updates leave them out): kept
// from the last version that had them.
const KEPT = ["history", "created_by"];
const ORG_SLOT_KINDS = new Set(["import", "teams"]);

function ordinal(n) {
  const s = n % 100 >= 11 && n % 100 <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
  return `${n}${s}`;
}

/** Why a queued job waits, and its place in its org's queue (the API's `queue`);
 * or why a rollback or undo has not started (the API's `waiting`). */
export function queueText(job) {
  if ((job.state === "terminating" || job.state === "undoing") && job.waiting) return `Waiting: ${job.waiting.reason}`;
  const q = job.queue;
  if (job.state !== "queued" || !q) return "";
  return `Waiting: ${q.reason} · ${ordinal(q.position)} of ${q.of} in the org's ${job.kind} queue`;
}

/** A rollback that has failed: how often, why, since when, and what it still holds. */
export function rollbackStatus(job) {
  const r = job.rollback;
  if (!r || !ROLLING_NOW.has(job.state) || !r.attempts) return "";
  const parts = [`Rollback attempt ${r.attempts} failed: ${r.error || "unknown error"}.`];
  if (r.failing_since) parts.push(`Failing without progress since ${time(r.failing_since)}.`);
  else parts.push("It was still making progress; the next attempt runs at once.");
  if (r.next_attempt_at) parts.push(`Next attempt ${time(r.next_attempt_at)}.`);
  if (ORG_SLOT_KINDS.has(job.kind)) {
    parts.push(
      r.slot_released
        ? `It has released the org's ${job.kind} slot (it failed for too long): the org's next ${job.kind} jobs may start; it keeps trying.`
        : `It holds the org's ${job.kind} slot: the org's next ${job.kind} job waits until it succeeds or has failed long enough to give the slot up.`,
    );
  }
  return parts.join(" ");
}

const ACTIVE = new Set(["queued", "running", "pausing", "paused", "terminating", "undoing"]);
const FINISHED = new Set(["completed", "terminated", "failed", "undone"]);
// States in which the job's writes are being taken back, and after which they are gone.
const ROLLING = new Set(["terminating", "undoing", "terminated", "undone"]);
const ROLLING_NOW = new Set(["terminating", "undoing"]);

export function isActive(job) {
  return ACTIVE.has(job.state);
}

export function isFinished(job) {
  return FINISHED.has(job.state);
}

/**
 * What the person is shown as the job's state. A state is a fact: "Paused"
 * only once the job has stopped writing. The service reports `pausing` while
 * the batch in flight lands, and a pause request on its way shows as pausing
 * from the click on. A service that predates the `pausing` state (its jobs
 * have no retry link: both came together) answers `paused` at once; there a
 * job whose last checkpoint still shows a rate has not recorded its last
 * batch yet, so it is shown as pausing too.
 */
export function phase(job, pending) {
  const stillLanding = !(job.links && job.links.retry) && ((job.progress && job.progress.rows_per_second) || 0) > 0;
  switch (job.state) {
    case "queued":
      return pending === "terminate" ? ["Terminating…", "terminating"] : ["Queued", "queued"];
    case "running":
      if (pending === "pause") return ["Pausing…", "pausing"];
      if (pending === "terminate") return ["Terminating…", "terminating"];
      return ["Running", "running"];
    case "pausing":
      return ["Pausing…", "pausing"];
    case "paused":
      if (pending === "resume") return ["Resuming…", "running"];
      return stillLanding ? ["Pausing…", "pausing"] : ["Paused", "paused"];
    case "terminating":
      return ["Rolling back…", "terminating"];
    case "terminated":
      return ["Terminated", "terminated"];
    case "undoing":
      return ["Undoing…", "terminating"];
    case "undone":
      return ["Undone", "terminated"];
    case "completed":
      return pending === "undo" ? ["Undoing…", "terminating"] : ["Completed", "completed"];
    case "failed":
      return ["Failed", "failed"];
    default:
      return [job.state, ""];
  }
}

export function title(job) {
  const p = job.params || {};
  if (job.kind === "import") return `${p.dataset || "import"} ← ${p.filename || "upload"}`;
  if (job.kind === "teams") return `teams ← ${p.filename || "sheet"}`;
  if (job.kind === "export") return `${p.dataset || "export"}${p.stream ? " (download)" : ""}`;
  return job.kind;
}

/** The rows the job has written and is taking back, for the rollback line. */
function rollbackText(job) {
  const p = job.progress || {};
  if (job.kind === "teams") {
    return `rolled back: ${count(p.teams_deleted || 0)} teams deleted, ${count(p.users_restored || 0)} users restored, ${count(p.users_deleted || 0)} users deleted`;
  }
  if (job.kind === "import") {
    // `inserted` can trail by the batch that was in flight when the job stopped.
    return `${count(p.rolled_back || 0)} rows rolled back${ROLLING_NOW.has(job.state) ? " so far" : ""}`;
  }
  return job.state === "terminating" ? "deleting the partial file" : "partial file deleted";
}

function statsText(job) {
  const p = job.progress || {};
  const parts = [];
  const total = p.total ?? null;
  parts.push(total === null ? `${count(p.processed || 0)} rows` : `${count(p.processed || 0)} of ${count(total)} rows`);
  if (p.percent !== undefined && total) parts.push(`${Number(p.percent).toFixed(1)}%`);
  if (job.kind === "teams" && (p.teams_created || p.users_created)) {
    parts.push(`${count(p.teams_created || 0)} teams, ${count(p.users_created || 0)} new users, ${count(p.users_updated || 0)} updated`);
  }
  if (job.kind === "export" && p.bytes) parts.push(bytes(p.bytes));
  if (p.failed) parts.push(`${count(p.failed)} row errors`);
  const rate = p.rows_per_second || 0;
  if (job.state === "running" && rate > 0) {
    parts.push(`${count(Math.round(rate))} rows/s`);
    if (total) parts.push(`ETA ${duration((total - (p.processed || 0)) / rate)}`);
  }
  return parts.join(" · ");
}

function clearChildren(el) {
  while (el.firstChild) el.firstChild.remove();
}

/** When the job was created, started and finished, as <time> elements. */
function whenParts(job) {
  const parts = [];
  for (const [key, label] of [
    ["created_at", "created"],
    ["started_at", "started"],
    ["finished_at", "finished"],
  ]) {
    if (!job[key]) continue;
    if (parts.length) parts.push(" · ");
    parts.push(`${label} `, h("time", { datetime: job[key] }, time(job[key])));
  }
  return parts;
}

function barState(job) {
  const p = job.progress || {};
  if (ROLLING.has(job.state)) {
    const done = !ROLLING_NOW.has(job.state);
    const written = job.kind === "import" ? Math.max(p.inserted || 0, p.rolled_back || 0) : 0;
    if (written) return [done ? 1 : Math.min(1, (p.rolled_back || 0) / written), "rollback"];
    return [done ? 1 : null, "rollback"];
  }
  if (p.total) return [Math.min(1, (p.processed || 0) / p.total), ""];
  if (job.state === "completed") return [1, ""];
  return [job.state === "running" ? null : 0, ""];
}

/**
 * A modal confirmation with an optional reason (kept in the audit trail):
 * resolves to {reason} or null. `lines` are shown as a list (what will happen).
 */
export function confirmDialog({ id, heading, text, lines = [], confirm, tone = "danger" }) {
  return new Promise((resolve) => {
    const reason = h("textarea", { id: `${id}-reason`, rows: 3, maxlength: 500 });
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": `${id}-title`, dataset: { dialog: id } },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: `${id}-title` }, heading),
        h("p", {}, text),
        lines.length ? h("ul", { class: "counts" }, lines.map((line) => h("li", {}, line))) : null,
        h("label", { for: `${id}-reason` }, "Reason (optional, recorded in the audit trail)"),
        reason,
        h(
          "div",
          { class: "actions" },
          h("button", { value: "cancel", class: "secondary", autofocus: true }, "Cancel"),
          h("button", { value: "confirm", class: tone }, confirm),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "confirm" ? { reason: reason.value.trim() } : null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Asks before a terminate, with an optional reason; resolves to {reason} or null. */
export function confirmTerminate(job) {
  return confirmDialog({
    id: "terminate",
    heading: `Terminate ${title(job)}?`,
    text:
      job.kind === "export"
        ? "The export stops and its file is deleted."
        : "The job stops and everything it wrote is rolled back. This cannot be undone.",
    confirm: "Terminate and roll back",
  });
}

/** The dry run's counts of an undo, as lines for its confirmation. */
export function undoLines(job, would) {
  if (job.kind === "import") {
    const lines = [`${count(would.rows)} rows of dataset ${would.dataset} deleted (all the rows this import wrote)`];
    if (would.deleted_since) lines.push(`${count(would.deleted_since)} of its ${count(would.inserted)} rows were already deleted by someone else`);
    return lines;
  }
  const lines = [
    `${count(would.teams)} teams deleted`,
    `${count(would.users_deleted)} users it created deleted`,
    `${count(would.users_restored)} existing users put back as they were before it (their later changes kept)`,
  ];
  if (would.users_kept) lines.push(`${count(would.users_kept)} users it created are kept: later teams list them or someone edited them`);
  return lines;
}

/** Runs the undo's dry run and asks, showing its counts; resolves to {reason} or null. */
export async function confirmUndo(job) {
  const dry = await api("POST", `${job.links.undo}?dry_run=true`);
  if (!dry.undoable) {
    toast(dry.refused || "This job can no longer be undone.", "error");
    return null;
  }
  return confirmDialog({
    id: "undo",
    heading: `Undo ${title(job)}?`,
    text: `Everything this ${job.kind === "import" ? "import" : "teams job"} wrote is rolled back, as if it had been terminated. It can be undone until ${time(dry.undo_until)}.`,
    lines: undoLines(job, dry.would || {}),
    confirm: "Undo the job",
  });
}

/**
 * A live card for one job. `me.can.control` decides whether any control is
 * offered at all; `update(job)` applies a new version of the job.
 */
export class JobCard {
  constructor(job, { me, link = true, onUpdate } = {}) {
    this.job = job;
    this.pending = null;
    this.onUpdate = onUpdate;
    this.stateEl = h("span", { class: "state", role: "status" });
    this.bar = progressBar(`Progress of ${title(job)}`);
    this.stats = h("p", { class: "stats" });
    this.rollback = h("p", { class: "rollback-text", hidden: true });
    this.rollbackStatus = h("p", { class: "rollback-status", role: "alert", hidden: true });
    this.queue = h("p", { class: "queue-text", hidden: true });
    this.when = h("p", { class: "when" });
    this.error = h("p", { class: "job-error", hidden: true });
    this.buttons = {};
    const controls = h("div", { class: "controls", role: "group", "aria-label": `Controls for ${title(job)}` });
    if (me && me.can.control) {
      for (const [action, label, style] of [
        ["pause", "Pause", "secondary"],
        ["resume", "Resume", "secondary"],
        ["terminate", "Terminate", "danger"],
        ["retry", "Retry", "secondary"],
        ["undo", "Undo…", "danger"],
      ]) {
        const button = h("button", { type: "button", class: style, onclick: () => this.act(action) }, label);
        button.setAttribute("aria-label", `${label} ${title(job)}`);
        this.buttons[action] = button;
        controls.append(button);
      }
    }
    const name = link ? h("a", { href: `#/jobs/${job.id}` }, title(job)) : h("span", {}, title(job));
    this.el = h(
      "article",
      { class: "job", dataset: { jobId: job.id } },
      h(
        "header",
        {},
        h("span", { class: `kind kind-${job.kind}` }, job.kind),
        h("h3", { class: "job-title" }, name),
        this.stateEl,
      ),
      this.bar,
      this.stats,
      this.queue,
      this.rollback,
      this.rollbackStatus,
      this.error,
      this.when,
      controls,
    );
    this.update(job);
  }

  update(job) {
    const last = this.job;
    if (last && last.id === job.id) {
      const kept = Object.fromEntries(KEPT.filter((k) => !(k in job) && k in last).map((k) => [k, last[k]]));
      // A queued job's reason comes with GET: a live update keeps the last one.
      if (!("queue" in job) && job.state === "queued" && last.state === "queued" && last.queue) kept.queue = last.queue;
      // So does a waiting rollback's, until it has rolled anything back.
      const still = job.state === last.state && (job.progress || {}).rolled_back === (last.progress || {}).rolled_back;
      if (!("waiting" in job) && still && last.waiting) kept.waiting = last.waiting;
      job = { ...job, ...kept };
    }
    if (this.pending && this.settles(job)) this.pending = null;
    this.job = job;
    const [label, tone] = phase(job, this.pending);
    this.stateEl.textContent = label;
    this.stateEl.dataset.state = tone;
    this.el.dataset.state = job.state;
    const [fraction, barTone] = barState(job);
    this.bar.set(fraction, `${label}: ${statsText(job)}`, barTone);
    this.stats.textContent = statsText(job);
    const rolling = ROLLING.has(job.state);
    this.rollback.hidden = !rolling;
    this.rollback.textContent = rolling ? rollbackText(job) : "";
    const failing = rollbackStatus(job);
    this.rollbackStatus.hidden = !failing;
    this.rollbackStatus.textContent = failing;
    const waiting = queueText(job);
    this.queue.hidden = !waiting;
    this.queue.textContent = waiting;
    clearChildren(this.when);
    this.when.append(...whenParts(job));
    const findings = job.findings || [];
    const guard = job.pause_reason && job.pause_reason.by === "guard" && job.state === "paused" ? "paused by the guard: " : "";
    const notes = [
      job.error ? `Error: ${job.error}` : "",
      findings.length ? `${guard}${findings.length} guard finding${findings.length > 1 ? "s" : ""} (${findings.map((f) => (f.kind || "").replace(/_/g, " ")).join(", ")})` : "",
    ].filter(Boolean);
    this.error.hidden = notes.length === 0;
    this.error.textContent = notes.join(" · ");
    const links = job.links || {};
    const show = {
      pause: job.state === "running" && !this.pending,
      resume: job.state === "paused" || job.state === "pausing",
      terminate: ["queued", "running", "pausing", "paused", "failed"].includes(job.state),
      retry: job.state === "failed",
      undo: job.state === "completed" && job.undoable === true,
    };
    for (const [action, button] of Object.entries(this.buttons)) {
      button.hidden = !(show[action] && links[action]);
      button.disabled = Boolean(this.pending);
    }
    if (this.onUpdate) this.onUpdate(job);
  }

  /** Whether the job has reached what the pending request asked for. */
  settles(job) {
    if (this.pending === "pause") return job.state !== "running";
    if (this.pending === "resume") return job.state !== "paused" && job.state !== "pausing";
    if (this.pending === "terminate") return job.state !== "running" && job.state !== "queued";
    if (this.pending === "undo") return job.state !== "completed";
    return job.state !== "failed";
  }

  async act(action) {
    let body;
    if (action === "terminate" || action === "undo") {
      let answer;
      try {
        answer = action === "terminate" ? await confirmTerminate(this.job) : await confirmUndo(this.job);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 401)) toast(problemText(error), "error");
        return;
      }
      if (!answer) return;
      if (answer.reason) body = { reason: answer.reason };
    }
    this.pending = action;
    this.update(this.job);
    try {
      const job = await api("POST", this.job.links[action], { json: body });
      this.pending = null;
      this.update(job);
    } catch (error) {
      this.pending = null;
      this.update(this.job);
      if (error instanceof ApiError && error.status === 401) return;
      toast(problemText(error), "error");
    }
  }
}
