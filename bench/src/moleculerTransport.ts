/** Moleculer's MQTT transporter at QoS 1 (the object form; a URL string keeps QoS 0), and TCP_NODELAY on its socket. */
import type { Socket } from "node:net"
import type { BrokerOptions, ServiceBroker } from "moleculer"

export const transporter = (port: number): NonNullable<BrokerOptions["transporter"]> =>
  ({ type: "MQTT", options: { host: "127.0.0.1", port, qos: Number(process.env.MOLECULER_QOS ?? 1) } }) as unknown as NonNullable<BrokerOptions["transporter"]>

export const setNoDelay = (broker: ServiceBroker): void => {
  ;((broker.transit?.tx as unknown as { client?: { stream?: Partial<Socket> } }).client?.stream as Partial<Socket> | undefined)?.setNoDelay?.(true)
}
