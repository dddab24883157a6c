// Agent files (export and import) go over the API as text, not JSON: export answers Markdown, and
// import takes the file's bytes as they are. `api.request` only sends and reads JSON, so these two
// calls are made here, with the same credentials and error shape (ApiError) as every other call.
import { ApiError, url } from "../api.js";

async function text(method, path, { body, contentType } = {}) {
  const headers = { accept: "text/markdown, application/json" };
  if (contentType) headers["content-type"] = contentType;
  const response = await fetch(url(path), { method, credentials: "same-origin", headers, body });
  const answer = await response.text();
  if (!response.ok) {
    let parsed = null;
    try {
      parsed = JSON.parse(answer);
    } catch {
      parsed = { error: answer.slice(0, 500) };
    }
    throw new ApiError(response.status, parsed);
  }
  return answer;
}

/** The agent as its export file (Markdown with YAML front matter). */
export function exportAgent(id) {
  return text("GET", `v1/agents/${id}/export`);
}

/** The content type the import route reads a file's text as, from its name. */
function typeOf(name) {
  if (/\.json$/i.test(name)) return "application/json";
  if (/\.ya?ml$/i.test(name)) return "application/yaml";
  if (/\.(md|markdown)$/i.test(name)) return "text/markdown";
  return undefined; // the server detects it
}

/** Creates an agent from a file's text; answers the new agent. */
export async function importAgent(name, content) {
  return JSON.parse(await text("POST", "v1/agents/import", { body: content, contentType: typeOf(name) }));
}

/** A file name for an agent's export. */
export function exportName(agent) {
  const slug = String(agent.name || "agent").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  return `${slug || "agent"}.agent.md`;
}
