/** A listening port that another process holds; the runtime turns it into a one-line error. */
export class PortInUseError extends Error {
  override readonly name = "PortInUseError"
  readonly listener: string
  readonly host: string
  readonly port: number
  constructor(listener: string, host: string, port: number) {
    super(`${listener} port ${port} is already in use on ${host}`)
    this.listener = listener
    this.host = host
    this.port = port
  }
}

/** An operator's request names something that does not exist (HTTP 404). */
export class NotFound extends Error {
  override readonly name = "NotFound"
}

/** An operator's request does not fit the current state (HTTP 409). */
export class Conflict extends Error {
  override readonly name = "Conflict"
}
