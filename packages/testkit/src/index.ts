export * as Process from "./Process.ts"
export * as Sessions from "./Sessions.ts"
export * as Mosquitto from "./Mosquitto.ts"
export * as Ports from "./Ports.ts"
