export * as EmbeddedBroker from "./EmbeddedBroker.ts"
