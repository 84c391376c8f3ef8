// The three shims the official client needs in Node (see DESIGN.md), loaded
// with `node --import` before a doc sample runs (tests/interop/test_doc_samples.py).
import { createRequire } from "node:module"
const require = createRequire(new URL("../../js/package.json", import.meta.url))
globalThis.WebSocket = require("ws").WebSocket
const w = new EventTarget()
globalThis.addEventListener = w.addEventListener.bind(w)
globalThis.removeEventListener = w.removeEventListener.bind(w)
const d = new EventTarget()
globalThis.document = { visibilityState: "visible", addEventListener: d.addEventListener.bind(d), removeEventListener: d.removeEventListener.bind(d) }
