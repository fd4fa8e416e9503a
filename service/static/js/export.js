// New export: a dataset, a date range, fields; in the background or as a download now.

import { api, ApiError, query } from "./api.js";
import { streamExport } from "./download.js";
import { bytes, clear, count, duration, h, problemText } from "./ui.js";

/** The export's preview: rows in range, the first rows, estimates of size and time. */
function previewReport(p) {
  const rows = `${count(p.rows_in_range)} rows in range${p.exact ? "" : " (estimated)"}`;
  const estimate = p.estimate || {};
  return h(
    "section",
    { class: "export-preview report", "aria-labelledby": "export-preview-title" },
    h("h2", { id: "export-preview-title", tabindex: "-1" }, "Preview: nothing was exported"),
    h("p", { class: "alert ok" }, h("strong", {}, rows), ` of ${count(p.rows_read)} in the dataset.`),
    h(
      "p",
      {},
      `About ${bytes(estimate.bytes)} of CSV`,
      estimate.seconds !== null && estimate.seconds !== undefined ? `, about ${duration(estimate.seconds)} to export (reading ${count(estimate.rows_per_second)} rows/s now).` : ".",
    ),
    h("p", { class: "hint" }, `How the rows were counted: ${p.counted}.`),
    p.first_rows && p.first_rows.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            {},
            h("caption", {}, `The first ${p.first_rows.length} rows, as the export writes them`),
            h("thead", {}, h("tr", {}, p.columns.map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, p.first_rows.map((r) => h("tr", {}, r.map((cell) => h("td", {}, cell))))),
          ),
        )
      : h("p", {}, "No rows in range."),
    p.first_rows_complete ? null : h("p", { class: "hint" }, "The search for the first rows stopped after a few seconds: the rows in range start further into the dataset."),
  );
}

/** Datasets this org has imported, with their columns and types (from completed imports). */
async function knownDatasets(signal) {
  const datasets = new Map();
  try {
    const page = await api("GET", `/api/v1/jobs${query({ kind: "import", state: "completed", limit: 200 })}`, { signal });
    for (const job of page.jobs.slice().reverse()) {
      const p = job.params || {};
      if (!p.dataset) continue;
      const known = datasets.get(p.dataset) || { columns: [], types: {} };
      for (const c of p.columns || []) if (!known.columns.includes(c)) known.columns.push(c);
      Object.assign(known.types, p.types || {});
      datasets.set(p.dataset, known);
    }
  } catch {
    // Only suggestions: the form works without them.
  }
  return datasets;
}

function field(id, label, input, hint) {
  input.id = id;
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

export async function exportView(root, { signal }) {
  const datasets = await knownDatasets(signal);
  const datasetList = h("datalist", { id: "datasets" }, [...datasets.keys()].map((d) => h("option", { value: d })));
  const dateList = h("datalist", { id: "date-fields" });
  const dataset = h("input", { type: "text", name: "dataset", required: true, list: "datasets", autocomplete: "off" });
  const dateField = h("input", { type: "text", name: "date_field", list: "date-fields", autocomplete: "off" });
  const from = h("input", { type: "date", name: "from" });
  const to = h("input", { type: "date", name: "to" });
  const fields = h("input", { type: "text", name: "fields", autocomplete: "off", placeholder: "all columns" });
  const fieldsHint = "Column names separated by commas, in the order wanted; empty for all.";
  const neutralize = h("input", { type: "checkbox", name: "neutralize_formulas", checked: true });
  const result = h("div", { class: "result" });
  const background = h("button", { type: "submit", class: "primary", value: "background" }, "Run in background");
  const now = h("button", { type: "button", class: "secondary" }, "Download now");
  const previewButton = h("button", { type: "button", class: "secondary" }, "Preview");

  const describe = () => {
    const known = datasets.get(dataset.value.trim());
    const dates = known ? known.columns.filter((c) => known.types[c] === "date") : [];
    clear(dateList, dates.map((c) => h("option", { value: c })));
    if (known && dates.length === 1 && !dateField.value) dateField.value = dates[0];
    document.getElementById("export-fields-hint").textContent = known ? `${fieldsHint} Columns: ${known.columns.join(", ")}.` : fieldsHint;
  };
  dataset.addEventListener("change", describe);

  const form = h(
    "form",
    { class: "export-form", novalidate: true },
    field("export-dataset", "Dataset", dataset),
    datasetList,
    h(
      "fieldset",
      {},
      h("legend", {}, "Date range (optional)"),
      field("export-date-field", "Date column", dateField, "A column imported as a date."),
      dateList,
      h("div", { class: "range" }, field("export-from", "From (included)", from), field("export-to", "To (not included)", to)),
    ),
    field("export-fields", "Fields", fields, fieldsHint),
    h("div", { class: "field check" }, neutralize, h("label", { for: "export-neutralize" }, "Neutralise spreadsheet formulas (=, +, -, @)")),
    h("div", { class: "actions" }, previewButton, background, now),
  );
  neutralize.id = "export-neutralize";
  clear(
    root,
    h("h1", { tabindex: "-1" }, "New export"),
    h("p", { class: "intro" }, "Writes a dataset's rows as CSV. In the background it is stored for download; “Download now” streams it straight to your browser (terminate it from the jobs list to stop it)."),
    form,
    result,
  );
  describe();

  function spec() {
    const value = {
      dataset: dataset.value.trim(),
      fields: fields.value.split(",").map((f) => f.trim()).filter(Boolean),
      neutralize_formulas: neutralize.checked,
    };
    if (!value.dataset) throw "Name the dataset to export.";
    if (dateField.value.trim()) value.date_field = dateField.value.trim();
    if (from.value) value.from = from.value;
    if (to.value) value.to = to.value;
    if ((value.from || value.to) && !value.date_field) throw "A date range needs the date column to compare with.";
    return value;
  }

  function fail(error) {
    if (error instanceof ApiError && error.status === 401) return;
    clear(result, h("p", { class: "problem", role: "alert" }, error instanceof Error ? problemText(error) : String(error)));
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = spec();
      if (!body.fields.length) delete body.fields;
      background.disabled = true;
      const job = await api("POST", "/api/v1/jobs/export", { json: body, signal });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      fail(error);
    } finally {
      background.disabled = false;
    }
  });
  previewButton.addEventListener("click", async () => {
    try {
      const body = spec();
      if (!body.fields.length) delete body.fields;
      previewButton.disabled = true;
      clear(result, h("p", { class: "loading", role: "status" }, "Counting the rows in range…"));
      const shown = previewReport(await api("POST", "/api/v1/jobs/export?dry_run=true", { json: body, signal }));
      clear(result, shown);
      shown.querySelector("h2").focus();
    } catch (error) {
      fail(error);
    } finally {
      previewButton.disabled = false;
    }
  });
  now.addEventListener("click", async () => {
    try {
      const body = spec();
      if (!body.fields.length) delete body.fields;
      await streamExport(body);
      clear(
        result,
        h("p", { class: "notice", role: "status" }, "The download has started in your browser. It is a job like the others: ", h("a", { href: "#/jobs?kind=export" }, "see it in the jobs list"), " to pause or terminate it."),
      );
    } catch (error) {
      fail(error);
    }
  });
}
