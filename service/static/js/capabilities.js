// What this service offers, read from its API description, so the console
// never offers a button the service would not understand (a dry_run a
// service did not know would start a real import).

import { api } from "./api.js";

let loaded = null;

function parameters(doc, path, method) {
  const operation = (((doc || {}).paths || {})[path] || {})[method] || {};
  return new Set((operation.parameters || []).map((p) => p.name));
}

export function capabilities() {
  if (!loaded) {
    loaded = api("GET", "/api/v1/openapi.json")
      .catch(() => null)
      .then((doc) => {
        if (!doc) {
          loaded = null; // asked again next time (a sign-in may have expired)
          // Without a description, what this version of the service offers.
          return { downloadTickets: false, importDryRun: true, importGuard: true, importNullValues: true, typeFormats: true };
        }
        const importParams = parameters(doc, "/api/v1/jobs/import", "post");
        return {
          downloadTickets: Boolean(doc && doc.paths && doc.paths["/api/v1/downloads"]),
          importDryRun: importParams.has("dry_run"),
          importGuard: importParams.has("guard"),
          importNullValues: importParams.has("null_values"),
          // The guard came with typed formats (col:date:%d/%m/%Y) and decimals.
          typeFormats: importParams.has("guard"),
        };
      });
  }
  return loaded;
}
