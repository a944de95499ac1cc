import { describe, expect, it } from "bun:test";
import { clientIp } from "../../src/gateway/chain.ts";

/** The client address the chain, the audit log and the sessions list record (src/gateway/chain.ts). */
describe("clientIp", () => {
  const xff = (value: string) => new Headers({ "x-forwarded-for": value });

  it("is the socket's address unless TRUST_PROXY is set", () => {
    expect(clientIp(xff("203.0.113.7"), "10.0.0.1", false)).toBe("10.0.0.1");
    expect(clientIp(new Headers(), "10.0.0.1", true)).toBe("10.0.0.1");
  });

  it("behind TRUST_PROXY, takes the last hop (our proxy's view), never a hop the client wrote before it", () => {
    expect(clientIp(xff("203.0.113.7"), "10.0.0.1", true)).toBe("203.0.113.7");
    expect(clientIp(xff("198.51.100.1, 203.0.113.7"), "10.0.0.1", true)).toBe("203.0.113.7");
    expect(clientIp(xff("198.51.100.1,2001:db8::5 "), "10.0.0.1", true)).toBe("2001:db8::5");
  });

  it.each(["unknown", "203.0.113.7:443", "<script>", "203.0.113.7/24", "[2001:db8::5]", "999.1.1.1", "1.2.3.4 5.6.7.8"])(
    "does not take a last hop that is no address (%p): the socket's address instead",
    (hop) => {
      expect(clientIp(xff(`203.0.113.7, ${hop}`), "10.0.0.1", true)).toBe("10.0.0.1");
      expect(clientIp(xff(hop), undefined, true)).toBeUndefined();
    },
  );
});
