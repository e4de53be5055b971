export * as MqttBroker from "./MqttBroker.ts"
