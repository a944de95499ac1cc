/**
 * Password hashing: argon2id through Bun.password (the PHC string carries its own cost, so a
 * hash made at one cost verifies at any other). Injected through Deps like the clock: the
 * server uses Bun's default cost (64 MiB, 2 passes: above OWASP's 19 MiB / 2 minimum); tests
 * pass a cheap one, since they create hundreds of accounts and each hash took 0.1-0.2 s.
 */
export interface Passwords {
  hash(password: string): Promise<string>;
  verify(password: string, hash: string): Promise<boolean>;
  /**
   * A hash of a random password at the same cost. Verifying against it when an email has no
   * account makes both failures cost one verification: timing does not tell which emails
   * have accounts.
   */
  dummyHash(): Promise<string>;
}

/** argon2id at Bun's default cost, or at `cost` (memory in KiB, passes). */
export function argon2id(cost: { memoryCost?: number; timeCost?: number } = {}): Passwords {
  const options = { algorithm: "argon2id" as const, ...cost };
  let dummy: Promise<string> | undefined;
  return {
    hash: (password) => Bun.password.hash(password, options),
    verify: (password, hash) => Bun.password.verify(password, hash),
    dummyHash: () => (dummy ??= Bun.password.hash(crypto.randomUUID(), options)),
  };
}
