// The console's calls to the runtime: the bearer token from localStorage on every request.
const tokenKey = "baton.token"

export const token = () => localStorage.getItem(tokenKey) ?? ""
export const setToken = (value) => (value === "" ? localStorage.removeItem(tokenKey) : localStorage.setItem(tokenKey, value))

const headers = (json) => ({
  ...(token() === "" ? {} : { authorization: `Bearer ${token()}` }),
  ...(json ? { "content-type": "application/json" } : {})
})

/** GET (or POST with a JSON body) one endpoint; rejects with the runtime's reason on a 4xx/5xx. */
export const api = async (path, { method = "GET", body } = {}) => {
  const res = await fetch(path, { method, headers: headers(body !== undefined), ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  const answer = await res.json().catch(() => ({}))
  if (!res.ok) throw Object.assign(new Error(`${res.status} ${answer.error ?? res.statusText}: ${answer.reason ?? ""}`), { status: res.status })
  return answer
}

/**
 * The live stream (server-sent events read with fetch, so that the token goes in the header):
 * calls `onEvent` with each envelope, `onState(true|false)` as it connects and drops. Returns stop().
 * It reconnects after a drop; callers poll as well, so nothing depends on it.
 */
export const stream = (query, onEvent, onState = () => {}) => {
  const abort = new AbortController()
  let stopped = false
  const run = async () => {
    while (!stopped) {
      try {
        const res = await fetch(`/events/stream?${new URLSearchParams(query)}`, { headers: headers(false), signal: abort.signal })
        if (!res.ok || res.body === null) throw new Error(`stream: ${res.status}`)
        onState(true)
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
        let buffer = ""
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          buffer += value
          let end
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n")
            if (data !== "") onEvent(JSON.parse(data))
          }
        }
      } catch {
        if (stopped) return
      }
      onState(false)
      if (!stopped) await new Promise((r) => setTimeout(r, 2000))
    }
  }
  void run()
  return () => {
    stopped = true
    abort.abort()
    onState(false)
  }
}
