// New import and new teams job: pick a file, check it first (dry run), start it.

import { api, query, upload, ApiError } from "./api.js";
import { capabilities } from "./capabilities.js";
import { importReport, teamsReport } from "./report.js";
import { bytes, clear, h, problemText, progressBar, time } from "./ui.js";

const TYPES = ["string", "int", "float", "bool", "date"];
const HEADER_BYTES = 64 * 1024;

/** The header of a CSV file, read from its first bytes only (quotes honoured). */
export async function sniffHeader(file) {
  const text = (await file.slice(0, HEADER_BYTES).text()).replace(/^\uFEFF/, "");
  const names = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      names.push(field.trim());
      field = "";
    } else if (c === "\n" || c === "\r") {
      names.push(field.trim());
      return names;
    } else field += c;
  }
  names.push(field.trim());
  return names;
}

function field(id, label, input, hint) {
  input.id = id;
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

function errorOptions(prefix, batchDefault, batchMax) {
  return [
    field(`${prefix}-batch`, "Batch size", h("input", { type: "number", name: "batch_size", min: 1, max: batchMax, placeholder: String(batchDefault) }), "Rows per batch; a pause takes effect within one batch."),
    field(
      `${prefix}-on-error`,
      "On a bad row",
      h("select", { name: "on_error" }, h("option", { value: "" }, "skip it (report a row error)"), h("option", { value: "fail" }, "fail the job")),
    ),
    field(`${prefix}-max-errors`, "Max row errors", h("input", { type: "number", name: "max_errors", min: 0, placeholder: "1000" }), "With skip, the job fails after this many bad rows."),
  ];
}

/** The shared shape of both forms; `kind` is "import" or "teams". */
function uploadForm(root, { kind, signal, heading, intro, fields, options, params, report, canDryRun }) {
  const file = h("input", { type: "file", name: "file", accept: ".csv,text/csv", required: true });
  const fileInfo = h("span", { class: "hint", id: `${kind}-file-hint` }, "A CSV file with a header row.");
  file.setAttribute("aria-describedby", fileInfo.id);
  const bar = progressBar("Upload progress");
  const barText = h("p", { class: "upload-text", "aria-live": "polite" });
  const uploading = h("div", { class: "uploading", hidden: true }, bar, barText);
  const result = h("div", { class: "result" });
  const check = h("button", { type: "button", class: "secondary", hidden: !canDryRun }, "Check first");
  const start = h("button", { type: "submit", class: "primary" }, "Start");
  const form = h(
    "form",
    { class: "upload-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: `${kind}-file` }, "CSV file"), Object.assign(file, { id: `${kind}-file` }), fileInfo),
    fields,
    h("details", {}, h("summary", {}, "More options"), options),
    h("div", { class: "actions" }, check, start),
    uploading,
  );
  clear(root, h("h1", { tabindex: "-1" }, heading), h("p", { class: "intro" }, intro), form, result);

  file.addEventListener("change", () => {
    const chosen = file.files[0];
    fileInfo.textContent = chosen ? `${chosen.name}, ${bytes(chosen.size)}` : "A CSV file with a header row.";
    form.dispatchEvent(new CustomEvent("filechange", { detail: chosen }));
  });

  async function send(dryRun) {
    const chosen = file.files[0];
    if (!chosen) {
      clear(result, h("p", { class: "problem", role: "alert" }, "Choose a CSV file first."));
      file.focus();
      return;
    }
    let values;
    try {
      values = params();
    } catch (message) {
      clear(result, h("p", { class: "problem", role: "alert" }, String(message)));
      return;
    }
    if (dryRun) values.dry_run = "true";
    const controller = new AbortController();
    signal.addEventListener("abort", () => controller.abort());
    check.disabled = start.disabled = true;
    uploading.hidden = false;
    clear(result);
    const onProgress = (loaded, total) => {
      bar.set(total ? loaded / total : null, `${bytes(loaded)} of ${bytes(total)}`);
      barText.textContent = loaded >= total ? `Uploaded ${bytes(total)}; the service is checking it…` : `Uploading: ${bytes(loaded)} of ${bytes(total)}`;
    };
    onProgress(0, chosen.size);
    try {
      const { body } = await upload(`/api/v1/jobs/${kind}${query(values)}`, chosen, { onProgress, signal: controller.signal });
      if (dryRun) {
        uploading.hidden = true;
        const shown = report(body);
        clear(result, shown);
        shown.querySelector("h2").focus();
      } else {
        location.hash = `#/jobs/${body.id}`;
      }
    } catch (error) {
      if (signal.aborted) return;
      uploading.hidden = true;
      if (!(error instanceof ApiError && error.status === 401)) {
        clear(result, h("p", { class: "problem", role: "alert" }, problemText(error)));
      }
    } finally {
      check.disabled = start.disabled = false;
    }
  }
  check.addEventListener("click", () => send(true));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    send(false);
  });
  return form;
}

function formValues(form, names) {
  const values = {};
  for (const name of names) {
    const input = form.elements[name];
    if (input && input.value.trim() !== "") values[name] = input.value.trim();
  }
  return values;
}

export async function importView(root, { signal }) {
  const caps = await capabilities();
  const types = caps.typeFormats ? [...TYPES, "decimal"] : TYPES;
  // Chromium compiles `pattern` with the v flag, where a bare "-" in a class is
  // a syntax error (and the whole check is then off): it is escaped.
  const dataset = h("input", { type: "text", name: "dataset", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}", autocomplete: "off" });
  const typesBox = h("fieldset", { class: "types" }, h("legend", {}, "Column types"), h("p", { class: "hint" }, "Pick a file to set its columns' types."));
  const guard = caps.importGuard
    ? h("select", { name: "guard" }, h("option", { value: "" }, "the service's default (warn)"), h("option", { value: "off" }, "off"), h("option", { value: "warn" }, "warn"), h("option", { value: "pause" }, "pause the job"))
    : null;
  const options = [
    caps.importGuard
      ? field(
          "import-guard",
          "Guard",
          guard,
          "Compares the first rows with the dataset's earlier imports (swapped columns, type drift, null spikes). For a dataset with history the console pauses the job on a finding, before it writes anything.",
        )
      : null,
    caps.importNullValues
      ? field("import-nulls", "Null markers", h("input", { type: "text", name: "null_values", placeholder: "NULL,N/A,-" }), "Cell values stored as null, comma-separated.")
      : null,
    ...errorOptions("import", 10000, 10000),
  ];
  const form = uploadForm(root, {
    kind: "import",
    signal,
    heading: "New import",
    intro: "Imports a CSV file into a dataset, one document per row. It can be paused, resumed or terminated (every row rolled back) at any time.",
    fields: [field("import-dataset", "Dataset", dataset, "1-64 letters, digits, _ or -."), typesBox],
    options,
    canDryRun: caps.importDryRun,
    report(body) {
      // No history to start from: the dry run's reading of the values types the columns.
      if (!history) applyTypes(Object.fromEntries((body.columns || []).map((c) => [c.name, c.inferred_type])), "dryrun");
      return importReport(body);
    },
    params() {
      if (!dataset.value.trim() || !dataset.checkValidity()) {
        dataset.focus();
        throw "Give the dataset a name: 1-64 letters, digits, _ or -, starting with a letter or digit.";
      }
      const types = [...typesBox.querySelectorAll("select")]
        .filter((s) => s.value !== "string")
        .map((s) => {
          const format = s.value === "date" && s.format ? s.format.value.trim() : "";
          return `${s.dataset.column}:${s.value}${format ? `:${format}` : ""}`;
        })
        .join(",");
      return { ...formValues(form, ["dataset", "guard", "null_values", "batch_size", "on_error", "max_errors"]), types };
    },
  });
  // Each column's type starts from what is known: the dataset's latest import
  // or, for a new dataset, the dry run. A type the person chose is kept.
  let history = null;
  let guardSetByUs = false;
  const touched = new Set();
  const typesHint = h("p", { class: "hint", "aria-live": "polite" });
  const SOURCES = {
    history: () => `Types pre-selected from the dataset's latest import (${history.latest_import && history.latest_import.at ? time(history.latest_import.at) : "its profile"}); change any that differ.`,
    dryrun: () => "Types pre-selected from the dry run (what the file's values look like); check them before starting.",
    none: () => "A new dataset: every column is a string unless you pick a type. “Check first” suggests types from the values.",
  };
  function applyTypes(specs, source) {
    for (const select of typesBox.querySelectorAll("select")) {
      const column = select.dataset.column;
      if (touched.has(column)) continue;
      const [type, ...format] = String(specs[column] || "string").split(":");
      const wanted = type === "datetime" ? "date" : type;
      select.value = types.includes(wanted) ? wanted : "string";
      if (select.format) {
        select.format.value = select.value === "date" ? format.join(":") : "";
        select.format.hidden = select.value !== "date";
      }
    }
    typesHint.textContent = SOURCES[source]();
  }
  async function loadHistory() {
    const name = dataset.value.trim();
    history = null;
    if (name && dataset.checkValidity()) {
      try {
        history = await api("GET", `/api/v1/datasets/${encodeURIComponent(name)}`, { signal });
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) return;
      }
    }
    if (guard && (guard.value === "" || guardSetByUs)) {
      guard.value = history ? "pause" : "";
      guardSetByUs = Boolean(history);
    }
    if (typesBox.querySelector("select")) applyTypes(history ? history.types : {}, history ? "history" : "none");
  }
  dataset.addEventListener("change", loadHistory);
  if (guard) guard.addEventListener("change", () => (guardSetByUs = false));

  form.addEventListener("filechange", async (e) => {
    if (!e.detail) return;
    const names = await sniffHeader(e.detail);
    touched.clear();
    clear(
      typesBox,
      h("legend", {}, "Column types"),
      typesHint,
      h(
        "div",
        { class: "type-grid" },
        names.map((name, i) => {
          const select = h("select", { id: `type-${i}`, dataset: { column: name } }, types.map((t) => h("option", { value: t }, t)));
          select.addEventListener("change", () => touched.add(name));
          const cell = h("div", { class: "field" }, h("label", { for: `type-${i}` }, name || `(column ${i + 1})`), select);
          if (caps.typeFormats) {
            // A date written another way than ISO 8601 takes a strptime format.
            select.format = h("input", { type: "text", id: `format-${i}`, placeholder: "ISO 8601", "aria-label": `Date format of ${name}`, hidden: true });
            select.addEventListener("change", () => {
              select.format.hidden = select.value !== "date";
            });
            cell.append(select.format);
          }
          return cell;
        }),
      ),
    );
    if (!dataset.value) dataset.value = e.detail.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_-]/g, "_").replace(/^[_-]+/, "").slice(0, 64);
    await loadHistory();
  });
}

export function teamsView(root, { signal }) {
  const form = uploadForm(root, {
    kind: "teams",
    signal,
    heading: "New teams job",
    intro: "Creates a team per row from a sheet with team, manager_name, manager_phone and members. Check it first: a slid column is found before anything is written.",
    fields: [field("teams-region", "Phone region", h("input", { type: "text", name: "region", maxlength: 2, placeholder: "US", autocomplete: "off" }), "How numbers written without +country are read (US, GB, DE, …).")],
    options: errorOptions("teams", 100, 1000),
    canDryRun: true,
    report: teamsReport,
    params: () => formValues(form, ["region", "batch_size", "on_error", "max_errors"]),
  });
}
