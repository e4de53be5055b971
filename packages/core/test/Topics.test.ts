import { describe, expect, it } from "vitest"
import { Topics } from "@baton/core"

describe("Topics", () => {
  it("names the contract's topics", () => {
    expect(Topics.initiate("place-order")).toBe("initiate/place-order")
    expect(Topics.event("order-created")).toBe("events/order-created")
    expect(Topics.error("initiate/place-order")).toBe("errors/initiate/place-order")
    expect(Topics.initiatingName("initiate/place-order")).toBe("place-order")
    expect(Topics.initiatingName("events/order-created")).toBeUndefined()
    expect(Topics.isEventName("order-created")).toBe(true)
    expect(Topics.isEventName("Order_Created")).toBe(false)
  })
})
