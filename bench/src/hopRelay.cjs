// `hopProbe.ts`'s raw TCP relay (its own process): the bytes of the first connection go to the second.
const net = require("node:net")
const conns = []
const server = net.createServer((s) => {
  s.setNoDelay(true)
  conns.push(s)
  s.on("data", (b) => {
    if (s === conns[0]) conns[1]?.write(b)
  })
  s.on("error", () => {})
})
server.listen(0, "127.0.0.1", () => console.log(`ready ${JSON.stringify({ port: server.address().port })}`))
process.on("SIGTERM", () => process.exit(0))
