// The Baton console: five pages over the runtime's JSON endpoints, routed by the URL's hash.
import { api, setToken, stream, token } from "./api.js"

/** h("tag.class", {attr}, ...children): a DOM element (strings become text; no HTML is parsed). */
const h = (spec, attrs = {}, ...children) => {
  const [tag, ...classes] = spec.split(".")
  const el = document.createElement(tag)
  if (classes.length > 0) el.className = classes.join(" ")
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v)
    else if (k === "value") el.value = v
    else el.setAttribute(k, v === true ? "" : String(v))
  }
  for (const c of children.flat(Infinity)) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c))
  return el
}
const badge = (status) => h("span.badge.s-" + String(status).replace(/[^a-z-]/g, ""), { "data-status": status }, status)
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "")
const age = (iso) => {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000))
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`
}
const pretty = (v) => JSON.stringify(v, null, 2)
const table = (head, rows, empty = "nothing here") =>
  rows.length === 0 ? h("p.muted", {}, empty) : h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows))
const field = (label, input) => h("label", {}, label, input)
const jsonOf = (text) => {
  if (text.trim() === "") return undefined
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new Error(`not JSON: ${e.message}`)
  }
}

const notice = (text, ok = false) => {
  const el = document.getElementById("notice")
  el.textContent = text
  el.className = ok ? "notice ok" : "notice"
  el.hidden = text === ""
}
/** Runs an operator action, says how it went, and re-renders the page. */
const act = async (what, run) => {
  try {
    await run()
    notice(`${what}: done`, true)
  } catch (e) {
    notice(`${what}: ${e.message}`)
  }
  await render()
}

// What the current page stops when another is shown (its stream and timers).
let cleanup = []
const onLeave = (f) => cleanup.push(f)
const every = (ms, f) => {
  const t = setInterval(f, ms)
  onLeave(() => clearInterval(t))
}
// Streams outlive a re-render of the same page: one per query, stopped when no render asks for it.
const streams = new Map()
let wanted = new Set()
const live = (query, onEvent) => {
  const key = JSON.stringify(query)
  wanted.add(key)
  const open = streams.get(key)
  if (open !== undefined) return void (open.onEvent = onEvent)
  const entry = { onEvent }
  entry.stop = stream(query, (e) => entry.onEvent(e), (on) => {
    const dot = document.getElementById("live")
    dot.classList.toggle("on", on)
    dot.textContent = on ? "● live" : "○"
  })
  streams.set(key, entry)
}

// ---- Flows -------------------------------------------------------------------------------------

const flowsPage = async (main, params) => {
  const search = h("form.bar", { id: "flow-search" },
    field("correlation id", h("input", { name: "correlationId", value: params.get("correlationId") ?? "", size: 36 })),
    field("event type", h("input", { name: "type", value: params.get("type") ?? "" })),
    field("key", h("input", { name: "key", value: params.get("key") ?? "" })),
    field("last minutes", h("input", { name: "minutes", value: params.get("minutes") ?? "60", size: 5 })),
    h("button", { type: "submit" }, "Search"))
  const stuck = h("form.bar", { id: "flow-stuck" },
    field("initiated by", h("input", { name: "type", value: params.get("stuckType") ?? "", placeholder: "place-order" })),
    field("has not reached", h("input", { name: "notReached", value: params.get("notReached") ?? "", placeholder: "order-shipped" })),
    field("in the last minutes", h("input", { name: "minutes", value: params.get("stuckMinutes") ?? "10", size: 5 })),
    h("button.quiet", { type: "submit" }, "Find stuck flows"))
  const go = (q) => (location.hash = `#/flows?${new URLSearchParams(Object.entries(q).filter(([, v]) => v !== ""))}`)
  search.addEventListener("submit", (e) => {
    e.preventDefault()
    const f = new FormData(search)
    const id = String(f.get("correlationId")).trim()
    if (id !== "") location.hash = `#/flows/${encodeURIComponent(id)}`
    else go({ type: f.get("type"), key: f.get("key"), minutes: f.get("minutes") })
  })
  stuck.addEventListener("submit", (e) => {
    e.preventDefault()
    const f = new FormData(stuck)
    go({ stuckType: f.get("type"), notReached: f.get("notReached"), stuckMinutes: f.get("minutes") })
  })
  const stuckQuery = params.get("stuckType") && params.get("notReached")
  const result = stuckQuery
    ? await api(`/flows/stuck?${new URLSearchParams({ type: params.get("stuckType"), notReached: params.get("notReached"), minutes: params.get("stuckMinutes") ?? "10" })}`)
    : await api(`/flows?${new URLSearchParams(Object.fromEntries(["type", "key", "minutes"].filter((k) => params.get(k)).map((k) => [k, params.get(k)])))}`)
  const rows = result.flows.map((f) =>
    h("tr", { "data-flow": f.correlationId },
      h("td.mono", {}, h("a", { href: `#/flows/${encodeURIComponent(f.correlationId)}` }, f.correlationId)),
      h("td", {}, f.initiating?.type ?? h("span.muted", {}, "(not kept)")),
      h("td.mono", {}, f.initiating?.key ?? ""),
      h("td", {}, f.events),
      h("td", {}, f.pending > 0 ? badge("pending") : "", f.parked > 0 ? badge("parked") : "", f.failed > 0 ? badge("failed") : ""),
      h("td", {}, time(f.lastAt))))
  main.append(
    h("h2", {}, "Flows"), search, stuck,
    h("h3", {}, stuckQuery ? `Initiated by ${result.type}, not reached ${result.notReached}` : "Recent flows"),
    table(["correlation", "initiated by", "key", "events", "open", "last event"], rows, "no flow in this window"))
  every(3000, () => !document.hidden && rerenderIfIdle())
}

/** The causation tree: each event under the event that caused it. */
const tree = (flow) => {
  const ids = new Set(flow.events.map((e) => e.id))
  const children = new Map()
  const roots = []
  for (const e of flow.events) {
    if (e.causationId === e.id || !ids.has(e.causationId)) roots.push(e)
    else children.set(e.causationId, [...(children.get(e.causationId) ?? []), e])
  }
  const failures = new Map(flow.rejections.filter((r) => r.envelopeId).map((r) => [r.envelopeId, r]))
  const node = (e) =>
    h("li", { "data-event-type": e.type, "data-event-id": e.id },
      h("span.node", {},
        h("span.type", {}, e.type), " ",
        h("span.muted.mono", {}, e.topic), " ",
        h("span.muted", {}, `key ${e.key} · ${time(e.occurredAt)}`), h("br"),
        e.deliveries.length === 0 ? h("span.muted", {}, "no processor here consumes it") : e.deliveries.map((d) => h("span.badge.s-" + d.status, { "data-processor": d.processor, "data-status": d.status, title: `received ${time(d.receivedAt)}${d.doneAt ? `, settled ${time(d.doneAt)}` : ""}` }, `${d.processor}: ${d.status}`)),
        failures.has(e.id) ? h("div.s-failed", {}, `failed: ${failures.get(e.id).reason}`) : ""),
      children.has(e.id) ? h("ul", {}, children.get(e.id).map(node)) : "")
  return h("ul.tree", { id: "flow-tree" }, roots.map(node))
}

const flowPage = async (main, id) => {
  const flow = await api(`/flows/${encodeURIComponent(id)}`)
  const s = flow.summary
  let workflow
  try {
    workflow = await api(`/workflows/${encodeURIComponent(id)}`)
  } catch {
    workflow = undefined
  }
  const arrived = h("ul.log.mono", { id: "arrived" })
  main.append(
    h("h2", {}, "Flow ", h("span.mono", {}, id)),
    h("p", { id: "flow-summary", "data-pending": s.pending, "data-parked": s.parked, "data-failed": s.failed, "data-events": s.events },
      `${s.events} events · ${s.pending} pending · ${s.parked} parked · ${s.failed} failed`, s.initiating ? ` · initiated by ${s.initiating.type} (key ${s.initiating.key})` : ""),
    workflow ? h("p", {}, "Workflow ", h("a", { href: `#/workflows/${encodeURIComponent(id)}` }, workflow.workflow), " ", badge(workflow.status)) : "",
    h("div.card", {}, tree(flow)),
    flow.rejections.length === 0 ? "" : h("div", {}, h("h3", {}, "Failures and rejections"), rejectionsTable(flow.rejections)),
    flow.dashboard.length === 0 ? "" : h("div", {}, h("h3", {}, "Dashboard entries"),
      table(["entry", "processor", "key", "error", "status"], flow.dashboard.map((d) =>
        h("tr", {}, h("td.mono", {}, h("a", { href: "#/repair" }, d.id.slice(0, 8))), h("td", {}, d.processor), h("td", {}, d.key), h("td", {}, d.error), h("td", {}, badge(d.status)))))),
    h("h3", {}, "Arrived live"), arrived)
  const seen = JSON.parse(sessionStorage.getItem(`arrived:${id}`) ?? "[]")
  for (const line of seen) arrived.append(h("li", {}, line))
  live({ correlationId: id }, (e) => {
    const line = `${time(e.occurredAt)} ${e.type} on ${e.topic}`
    seen.push(line)
    sessionStorage.setItem(`arrived:${id}`, JSON.stringify(seen.slice(-50)))
    arrived.append(h("li", {}, line))
    rerenderSoon()
  })
  every(2000, () => rerenderIfIdle())
}

const rejectionsTable = (rejections) =>
  table(["at", "kind", "processor", "reason", ""], rejections.map((r) =>
    h("tr", { "data-rejection": r.id },
      h("td", {}, time(r.at)), h("td", {}, r.kind), h("td", {}, r.processor ?? ""), h("td", {}, r.reason),
      h("td", { "data-resubmitted": r.resubmittedAs }, r.resubmittedAs ? h("span.badge.s-resubmitted", {}, "resubmitted") : r.resubmittable ? resubmitRejection(r) : ""))))

/** The failed envelope in a rejection's payload (masked), when it is whole JSON. */
const failedOf = (r) => {
  try {
    return typeof r.payload === "string" ? JSON.parse(r.payload) : undefined
  } catch {
    return undefined
  }
}

const resubmitRejection = (r) => {
  const data = h("textarea", { rows: 3, placeholder: "corrected data (JSON); empty resubmits it as it was", "aria-label": "corrected data" })
  const failed = failedOf(r)
  return h("form.resubmit", { onsubmit: (e) => {
    e.preventDefault()
    act(`resubmit rejection ${r.id.slice(0, 8)}`, () => api(`/errors/${encodeURIComponent(r.id)}/resubmit`, { method: "POST", body: jsonOf(data.value) }))
  } },
    failed?.data === undefined ? "" : h("details", {}, h("summary.muted", {}, "failed data (masked: copy, then fix what is masked)"), h("pre.mono", {}, pretty(failed.data))),
    failed?.correlationId === undefined ? "" : h("p", {}, h("a", { href: `#/flows/${encodeURIComponent(failed.correlationId)}` }, "its flow")),
    data, h("button", { type: "submit" }, "Resubmit"))
}

// ---- Workflows ---------------------------------------------------------------------------------

const workflowsPage = async (main, params) => {
  const filter = h("form.bar", {},
    field("status", h("select", { name: "status" }, ["", "running", "failed", "discarded"].map((s) => h("option", { value: s, selected: params.get("status") === s }, s || "any")))),
    field("domain", h("input", { name: "domain", value: params.get("domain") ?? "" })),
    h("button", { type: "submit" }, "Show"))
  filter.addEventListener("submit", (e) => {
    e.preventDefault()
    location.hash = `#/workflows?${new URLSearchParams([...new FormData(filter)].filter(([, v]) => v !== ""))}`
  })
  const q = new URLSearchParams(["status", "domain"].filter((k) => params.get(k)).map((k) => [k, params.get(k)]))
  const { workflows } = await api(`/workflows?${q}`)
  main.append(h("h2", {}, "Workflows"), filter,
    table(["workflow", "id", "domain", "status", "step", "failure", "updated"], workflows.map((w) =>
      h("tr", { "data-workflow": w.id },
        h("td", {}, w.workflow), h("td.mono", {}, h("a", { href: `#/workflows/${encodeURIComponent(w.id)}` }, w.id)), h("td", {}, w.domain), h("td", {}, badge(w.status)),
        h("td", {}, `${w.track} ${w.step}`), h("td", {}, w.failure ? `${w.failure.command}: ${w.failure.reason}` : ""), h("td", {}, time(w.updatedAt)))), "no workflow (finished ones are deleted once announced)"))
  every(3000, () => rerenderIfIdle())
}

const workflowPage = async (main, id) => {
  let w
  try {
    w = await api(`/workflows/${encodeURIComponent(id)}`)
  } catch (e) {
    main.append(h("h2", {}, "Workflow ", h("span.mono", {}, id)), h("p.muted", { id: "workflow-gone" }, e.message), h("p", {}, h("a", { href: `#/flows/${encodeURIComponent(id)}` }, "its flow")))
    return
  }
  const patch = h("textarea", { rows: 4, id: "restart-patch", "aria-label": "restart patch" }, "{}")
  const reason = h("input", { placeholder: "why it is given up", size: 40, "aria-label": "discard reason" })
  main.append(
    h("h2", {}, `Workflow ${w.workflow} `, h("span.mono", {}, w.id), " ", badge(w.status)),
    h("p", {}, `domain ${w.domain} · started ${time(w.startedAt)} · updated ${time(w.updatedAt)} · `, h("a", { href: `#/flows/${encodeURIComponent(w.id)}` }, "its flow")),
    w.failure ? h("p.s-failed", { id: "workflow-failure" }, `failed at ${w.failure.step} (${w.failure.command}): ${w.failure.reason}`) : "",
    h("div.grid", {},
      h("div.card", {}, h("h3", {}, "Steps"), h("ol.timeline", { id: "timeline" }, w.commands.map((c) =>
        h("li", { "data-command": c.name, "data-status": c.status }, badge(c.status), h("strong", {}, c.name), ` step ${c.step} (${c.track}) on ${c.channel} · attempt ${c.attempts}`, h("br"),
          h("span.muted", {}, `sent ${time(c.sentAt)}${c.ackedAt ? ` · acked ${time(c.ackedAt)}` : ""}${c.failedAt ? ` · failed ${time(c.failedAt)}` : ""}`),
          c.error ? h("div.s-failed", {}, c.error) : "")))),
      h("div.card", {}, h("h3", {}, "Input (masked)"), h("pre.mono", {}, pretty(w.input)))),
    w.status === "failed"
      ? h("div.card", {},
          h("h3", {}, "Restart at the failed step"),
          h("p.muted", {}, "A JSON patch merged into the input (e.g. a new card); {} restarts it as it was."),
          patch, h("p", {},
            h("button", { id: "restart", onclick: () => act("restart", () => api(`/workflows/${encodeURIComponent(id)}/restart`, { method: "POST", body: jsonOf(patch.value) })) }, "Restart"), " ",
            reason, " ",
            h("button.danger", { onclick: () => act("discard", () => api(`/workflows/${encodeURIComponent(id)}/discard`, { method: "POST", body: { reason: reason.value } })) }, "Discard")))
      : "")
  if (w.status === "running") every(1500, () => rerenderIfIdle())
}

// ---- Repair queue ------------------------------------------------------------------------------

const repairPage = async (main) => {
  main.append(h("h2", {}, "Repair queue"))
  let dashboard
  try {
    dashboard = await api("/dashboard?status=open")
  } catch (e) {
    main.append(h("p.muted", {}, e.message))
  }
  if (dashboard !== undefined) {
    main.append(h("h3", {}, "Held keys"),
      table(["processor", "key", "held by", "parked", "held for"], dashboard.held.map((k) =>
        h("tr", { "data-held": k.key }, h("td", {}, k.processor), h("td.mono", {}, k.key), h("td.mono", {}, k.failedId.slice(0, 8)), h("td", { "data-parked": k.parked }, k.parked), h("td", {}, age(k.since)))), "no key is held"),
      h("h3", {}, "Dashboard entries"),
      ...(dashboard.entries.length === 0 ? [h("p.muted", {}, "no open entry")] : dashboard.entries.map(entryCard)))
  }
  const { recent } = await api("/errors?limit=200")
  const failed = recent.filter((r) => r.kind === "processing-failed")
  main.append(h("h3", {}, "Processing failures"), h("p.muted", {}, "A processor failed on a valid message: resubmit it to that processor, corrected or as it was."),
    rejectionsTable(failed.map((r) => ({ ...r, resubmittable: true }))))
  every(2500, () => rerenderIfIdle())
}

const entryCard = (e) => {
  const data = h("textarea", { rows: 6, "aria-label": "corrected payload" }, pretty(e.payload))
  const reason = h("input", { placeholder: "reason", size: 30, "aria-label": "discard reason" })
  return h("div.card", { "data-entry": e.id, "data-key": e.key },
    h("strong", {}, `${e.type} `), h("span.mono", {}, e.key), ` · ${e.processor} · ${age(e.createdAt)} ago`,
    h("div.s-failed", {}, e.error),
    h("p.muted", {}, `attempts ${e.attempts.length} · correlation `, h("a.mono", { href: `#/flows/${encodeURIComponent(e.trail[0] ?? "")}` }, (e.trail[0] ?? "").slice(0, 8))),
    data,
    h("p", {},
      h("button", { onclick: () => act("resubmit", () => api(`/dashboard/${encodeURIComponent(e.id)}/resubmit`, { method: "POST", body: jsonOf(data.value) })) }, "Resubmit edited"), " ",
      reason, " ",
      h("button.danger", { onclick: () => act("discard", () => api(`/dashboard/${encodeURIComponent(e.id)}/discard`, { method: "POST", body: { reason: reason.value } })) }, "Discard")))
}

// ---- Errors and cluster ------------------------------------------------------------------------

const errorsPage = async (main) => {
  const { counts, security, recent } = await api("/errors?limit=100")
  main.append(h("h2", {}, "Errors"),
    h("div.grid", {},
      h("div.card", {}, h("h3", {}, "Rejections by kind"), table(["kind", "count"], Object.entries(counts).map(([k, n]) => h("tr", {}, h("td", {}, k), h("td", {}, n))), "none")),
      h("div.card", {}, h("h3", {}, "Refused by security"), table(["what", "count"], Object.entries(security).map(([k, n]) => h("tr", {}, h("td", {}, k), h("td", {}, n))), "none"))),
    h("h3", {}, "Recent"),
    table(["at", "kind", "topic", "processor", "reason", "payload"], recent.map((r) =>
      h("tr", { "data-rejection": r.id }, h("td", {}, time(r.at)), h("td", {}, r.kind), h("td.mono", {}, r.topic), h("td", {}, r.processor ?? ""), h("td", {}, r.reason), h("td.mono", {}, r.payload.slice(0, 120))))))
  every(4000, () => rerenderIfIdle())
}

const clusterPage = async (main) => {
  const health = await fetch("/healthz").then((r) => r.json())
  main.append(h("h2", {}, "Cluster"),
    h("div.card", {}, h("h3", {}, "This instance"), h("p", {}, badge(health.status), ` outbox ${health.outbox} · memory ${health.memory?.rssMb} MB`),
      table(["processor", "partitions", "restarts"], (health.processors ?? []).map((p) => h("tr", {}, h("td", {}, p.name), h("td", {}, p.partitions), h("td", {}, p.restarts))))))
  try {
    const c = await api("/cluster")
    main.append(h("h3", {}, `Members (${c.partitions} partitions)`),
      table(["instance", "partitions", "workflows", "seen"], c.members.map((m) => h("tr", {}, h("td.mono", {}, m.instance), h("td", {}, m.partitions.join(", ")), h("td", {}, m.workflows.length), h("td", {}, time(m.heartbeatAt ?? m.seenAt))))),
      c.unowned.length > 0 ? h("p.s-failed", {}, `unowned partitions: ${c.unowned.join(", ")}`) : "")
  } catch (e) {
    main.append(h("p.muted", { id: "cluster-note" }, e.status === 404 ? "Not a cluster: this instance runs alone on its embedded store (a cluster shares BATON_DATABASE_URL)." : e.message))
  }
  every(5000, () => rerenderIfIdle())
}

// ---- Routing -----------------------------------------------------------------------------------

let rendering = false
let pending = undefined
/** Re-renders unless the operator is typing in a field of this page. */
const rerenderIfIdle = () => {
  const a = document.activeElement
  if (a !== null && ["INPUT", "TEXTAREA", "SELECT", "SUMMARY"].includes(a.tagName) && a.id !== "token") return
  void render()
}
const rerenderSoon = () => {
  clearTimeout(pending)
  pending = setTimeout(rerenderIfIdle, 150)
}

const render = async () => {
  if (rendering) return rerenderSoon()
  rendering = true
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?")
  const [first, id] = path.split("/")
  const page = first || "flows"
  const params = new URLSearchParams(query)
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page)
  const main = h("main", { id: "main", "data-page": page })
  const previous = cleanup
  cleanup = []
  wanted = new Set()
  try {
    const draw = { flows: () => (id ? flowPage(main, decodeURIComponent(id)) : flowsPage(main, params)), workflows: () => (id ? workflowPage(main, decodeURIComponent(id)) : workflowsPage(main, params)), repair: () => repairPage(main), errors: () => errorsPage(main), cluster: () => clusterPage(main) }[page]
    if (draw === undefined) main.append(h("p", {}, `no page ${page}`))
    else await draw()
  } catch (e) {
    main.append(h("p.s-failed", {}, e.status === 401 ? "Enter a bearer token above ('pnpm baton token add <user>')." : e.message))
  } finally {
    for (const f of previous) f()
    for (const [key, entry] of streams) if (!wanted.has(key)) (entry.stop(), streams.delete(key))
    document.getElementById("main").replaceWith(main)
    rendering = false
  }
}

document.getElementById("token").value = token()
document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault()
  setToken(document.getElementById("token").value.trim())
  notice("token saved", true)
  void render()
})
window.addEventListener("hashchange", () => {
  notice("")
  void render()
})
void render()
