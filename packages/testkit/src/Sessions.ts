/** Removes persistent sessions a test left on a shared broker, so they do not queue its traffic. */
import mqtt from "mqtt"

export const purge = async (url: string, clientIds: ReadonlyArray<string>): Promise<void> => {
  for (const clientId of clientIds) {
    // [MQTT-3.1.2-6]: a CONNECT with CleanSession=1 discards the previous session.
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId, clean: true, reconnectPeriod: 0 })
    await client.endAsync()
  }
}
