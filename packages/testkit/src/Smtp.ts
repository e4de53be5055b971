/** A real SMTP server on an ephemeral loopback port, keeping what it receives (tests of e-mail). */
import type { AddressInfo } from "node:net"
import { SMTPServer } from "smtp-server"

export interface Mail {
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly body: string
}

export interface Smtp {
  readonly url: string
  readonly received: ReadonlyArray<Mail>
  readonly close: () => Promise<void>
}

export const start = async (): Promise<Smtp> => {
  const received: Array<Mail> = []
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    onData: (stream, session, done) => {
      let body = ""
      stream.on("data", (c: Buffer) => (body += c.toString()))
      stream.on("end", () => {
        received.push({ from: session.envelope.mailFrom === false ? "" : session.envelope.mailFrom.address, to: session.envelope.rcptTo.map((r) => r.address), body })
        done()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))
  const port = (server.server.address() as AddressInfo).port
  return { url: `smtp://127.0.0.1:${port}`, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}
