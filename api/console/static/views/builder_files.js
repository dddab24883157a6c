// Agent files (export and import) go over the API as text, not JSON: export answers Markdown, and
// import takes the file's bytes as they are.
import { request } from "../api.js";

/** The agent as its export file (Markdown with YAML front matter). */
export function exportAgent(id) {
  return request("GET", `v1/agents/${id}/export`, { text: true, headers: { accept: "text/markdown, application/json" } });
}

/** The content type the import route reads a file's text as, from its name. */
function typeOf(name) {
  if (/\.json$/i.test(name)) return "application/json";
  if (/\.ya?ml$/i.test(name)) return "application/yaml";
  if (/\.(md|markdown)$/i.test(name)) return "text/markdown";
  return "text/plain;charset=UTF-8"; // what a browser sends for a string body: the server detects it
}

/** Creates an agent from a file's text; answers the new agent. */
export async function importAgent(name, content) {
  return request("POST", "v1/agents/import", { body: content, contentType: typeOf(name) });
}

/** A file name for an agent's export. */
export function exportName(agent) {
  const slug = String(agent.name || "agent").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  return `${slug || "agent"}.agent.md`;
}
