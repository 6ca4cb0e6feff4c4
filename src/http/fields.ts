// Header fields as a plain ordered list: names keep the case they arrived
// with, repeated fields stay separate lines (Set-Cookie above all), and
// lookups are by lower-case name. The proxy reads a dozen headers per request
// and copies the rest through; a web `Headers` object for every request cost
// about a quarter of the HTTP/1 listener's throughput (README, "How it works").

/** A 5-bit digest of a lower-case name, for the presence mask. */
function digest(key: string): number {
  return (key.length * 7 + key.charCodeAt(key.length - 1)) & 31;
}

export class Fields {
  /** name (as received), key (its lower case), value; three slots per field. */
  private readonly slots: string[] = [];
  /**
   * One bit per name digest present: most lookups are for fields a request
   * does not have (Expect, Upgrade, X-Request-ID…), and this answers those
   * without a scan. Bits are never cleared, so a set bit only means "maybe".
   */
  private present = 0;

  get size(): number {
    return this.slots.length / 3;
  }

  private indexOf(key: string, from = 0): number {
    if ((this.present & (1 << digest(key))) === 0) return -1;
    const slots = this.slots;
    for (let i = from * 3 + 1; i < slots.length; i += 3) if (slots[i] === key) return (i - 1) / 3;
    return -1;
  }

  /** The first value of a field, by lower-case name. */
  get(key: string): string | undefined {
    const i = this.indexOf(key);
    return i === -1 ? undefined : this.slots[i * 3 + 2];
  }

  /** Every value of a field, in order. */
  getAll(key: string): string[] {
    const out: string[] = [];
    if ((this.present & (1 << digest(key))) === 0) return out;
    const slots = this.slots;
    for (let i = 1; i < slots.length; i += 3) if (slots[i] === key) out.push(slots[i + 1]!);
    return out;
  }

  has(key: string): boolean {
    return this.indexOf(key) !== -1;
  }

  append(name: string, value: string, key = name.toLowerCase()): void {
    this.slots.push(name, key, value);
    this.present |= 1 << digest(key);
  }

  /** Replaces every line of the field with one. */
  set(name: string, value: string): void {
    const key = name.toLowerCase();
    const i = this.indexOf(key);
    if (i === -1) return this.append(name, value, key);
    this.slots[i * 3 + 2] = value;
    this.deleteFrom(key, i + 1);
  }

  delete(key: string): void {
    this.deleteFrom(key, 0);
  }

  private deleteFrom(key: string, first: number) {
    const slots = this.slots;
    for (let i = slots.length - 3; i >= first * 3; i -= 3) if (slots[i + 1] === key) slots.splice(i, 3);
  }

  /** Removes every field whose lower-case name is in `keys` (or, with `also`, accepted by it). */
  deleteAll(keys: ReadonlySet<string>, also?: readonly string[], keep?: string): void {
    const slots = this.slots;
    for (let i = slots.length - 3; i >= 0; i -= 3) {
      const key = slots[i + 1]!;
      if (key !== keep && (keys.has(key) || (also !== undefined && also.includes(key)))) slots.splice(i, 3);
    }
  }

  // Positional access, for loops on the hot path that should not allocate a callback.
  nameAt(i: number): string {
    return this.slots[i * 3]!;
  }

  keyAt(i: number): string {
    return this.slots[i * 3 + 1]!;
  }

  valueAt(i: number): string {
    return this.slots[i * 3 + 2]!;
  }

  forEach(fn: (value: string, name: string, key: string) => void): void {
    const slots = this.slots;
    for (let i = 0; i < slots.length; i += 3) fn(slots[i + 2]!, slots[i]!, slots[i + 1]!);
  }

  /** Lower-case names with a value in any line (`Connection: close, x-secret`). */
  tokens(key: string): string[] {
    const out: string[] = [];
    if ((this.present & (1 << digest(key))) === 0) return out;
    const slots = this.slots;
    for (let i = 1; i < slots.length; i += 3) {
      if (slots[i] !== key) continue;
      for (const token of slots[i + 1]!.split(",")) {
        const t = token.trim().toLowerCase();
        if (t) out.push(t);
      }
    }
    return out;
  }

  /** The fields as HTTP/1.1 header lines, each ending in CRLF. */
  serialize(): string {
    let out = "";
    const slots = this.slots;
    for (let i = 0; i < slots.length; i += 3) out += `${slots[i]}: ${slots[i + 2]}\r\n`;
    return out;
  }

  static from(headers: Headers): Fields {
    const out = new Fields();
    headers.forEach((value, name) => {
      if (name !== "set-cookie") out.append(name, value, name);
    });
    for (const cookie of headers.getSetCookie()) out.append("set-cookie", cookie, "set-cookie");
    return out;
  }

  toHeaders(): Headers {
    const out = new Headers();
    const slots = this.slots;
    for (let i = 0; i < slots.length; i += 3) out.append(slots[i]!, slots[i + 2]!);
    return out;
  }
}
