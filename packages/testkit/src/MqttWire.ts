/**
 * MQTT 3.1.1 on a raw socket, for the tests that must see or write the wire itself (several
 * packets in one write, the order of acknowledgements): packets built byte by byte, and a byte
 * stream framed back into packets.
 */

/** An MQTT string: two length bytes, then UTF-8 [MQTT-1.5.3]. */
export const str = (s: string): Buffer => {
  const b = Buffer.from(s)
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}

/** The remaining length, 7 bits a byte, least significant first [MQTT-2.2.3]. */
const remaining = (n: number): Buffer => {
  const out: Array<number> = []
  do {
    let d = n % 128
    n = Math.floor(n / 128)
    if (n > 0) d |= 0x80
    out.push(d)
  } while (n > 0)
  return Buffer.from(out)
}

/** A packet: its fixed header's first byte, the remaining length, the body. */
export const packet = (first: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([first]), remaining(body.length), body])

/** CONNECT, MQTT 3.1.1, clean session, keep-alive `keepAlive` seconds (0: none). */
export const connectPacket = (clientId: string, keepAlive = 0): Buffer =>
  packet(0x10, Buffer.concat([str("MQTT"), Buffer.from([4, 0x02, keepAlive >> 8, keepAlive & 0xff]), str(clientId)]))

/** PUBLISH at `qos`, with message id `id` unless QoS 0. */
export const publishPacket = (topic: string, payload: string | Buffer, qos: 0 | 1 | 2, id: number): Buffer =>
  packet(0x30 | (qos << 1), Buffer.concat([str(topic), qos > 0 ? Buffer.from([id >> 8, id & 0xff]) : Buffer.alloc(0), Buffer.from(payload)]))

/**
 * MQTT packets framed from a byte stream (fixed header, remaining length), each given to `onPacket`
 * with its type (high nibble of the first byte), flags, body and the whole packet's bytes.
 */
export const framer = (onPacket: (type: number, flags: number, body: Buffer, packet: Buffer) => void) => {
  let pending = Buffer.alloc(0)
  return (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    for (;;) {
      if (pending.length < 2) return
      let length = 0
      let multiplier = 1
      let i = 1
      for (; i < pending.length && i <= 4; i++) {
        length += (pending[i]! & 0x7f) * multiplier
        multiplier *= 128
        if ((pending[i]! & 0x80) === 0) break
      }
      if (i >= pending.length || pending.length < i + 1 + length) return
      onPacket(pending[0]! >> 4, pending[0]! & 0x0f, pending.subarray(i + 1, i + 1 + length), pending.subarray(0, i + 1 + length))
      pending = pending.subarray(i + 1 + length)
    }
  }
}
