// Header fields as a plain ordered list: names keep the case they arrived
// with, repeated fields stay separate lines (Set-Cookie above all), and
// lookups are by lower-case name. The proxy reads a dozen headers per request
// and copies the rest through; a web `Headers` object for every request cost
// about a quarter of the HTTP/1 listener's throughput (README, "How it works").

export class Fields {
  /** Names as received, their lower-case forms, and values: parallel arrays. */
  private readonly names: string[] = [];
  private readonly keys: string[] = [];
  private readonly values: string[] = [];

  get size(): number {
    return this.names.length;
  }

  /** The first value of a field, by lower-case name. */
  get(key: string): string | undefined {
    const i = this.keys.indexOf(key);
    return i === -1 ? undefined : this.values[i];
  }

  /** Every value of a field, in order. */
  getAll(key: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] === key) out.push(this.values[i]!);
    return out;
  }

  has(key: string): boolean {
    return this.keys.includes(key);
  }

  append(name: string, value: string, key = name.toLowerCase()): void {
    this.names.push(name);
    this.keys.push(key);
    this.values.push(value);
  }

  /** Replaces every line of the field with one. */
  set(name: string, value: string): void {
    const key = name.toLowerCase();
    const i = this.keys.indexOf(key);
    if (i === -1) return this.append(name, value, key);
    this.values[i] = value;
    this.deleteFrom(key, i + 1);
  }

  delete(key: string): void {
    this.deleteFrom(key, 0);
  }

  private deleteFrom(key: string, start: number): void {
    for (let i = this.keys.length - 1; i >= start; i--) {
      if (this.keys[i] !== key) continue;
      this.names.splice(i, 1);
      this.keys.splice(i, 1);
      this.values.splice(i, 1);
    }
  }

  /** Removes every field whose lower-case name `test` accepts. */
  removeWhere(test: (key: string) => boolean): void {
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (!test(this.keys[i]!)) continue;
      this.names.splice(i, 1);
      this.keys.splice(i, 1);
      this.values.splice(i, 1);
    }
  }

  forEach(fn: (value: string, name: string, key: string) => void): void {
    for (let i = 0; i < this.names.length; i++) fn(this.values[i]!, this.names[i]!, this.keys[i]!);
  }

  /** Lower-case names with a value in any line (`Connection: close, x-secret`). */
  tokens(key: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] !== key) continue;
      for (const token of this.values[i]!.split(",")) {
        const t = token.trim().toLowerCase();
        if (t) out.push(t);
      }
    }
    return out;
  }

  /** The fields as HTTP/1.1 header lines, each ending in CRLF. */
  serialize(): string {
    let out = "";
    for (let i = 0; i < this.names.length; i++) out += `${this.names[i]}: ${this.values[i]}\r\n`;
    return out;
  }

  copy(): Fields {
    const out = new Fields();
    out.names.push(...this.names);
    out.keys.push(...this.keys);
    out.values.push(...this.values);
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
    for (let i = 0; i < this.names.length; i++) out.append(this.names[i]!, this.values[i]!);
    return out;
  }
}
