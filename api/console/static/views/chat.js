// Placeholder: this view is being built.
import { html } from "../html.js";
import { Page } from "../ui.js";

export default function View() {
  return html`<${Page} title="Chat"><p class="muted">Coming soon.</p><//>`;
}
