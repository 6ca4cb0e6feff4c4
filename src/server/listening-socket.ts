// A listening TCP socket that this process holds but never accepts on: the
// workers accept on it (README "Workers"). Bun.listen would accept in this
// process too, and Bun has no way to open a socket without polling it, so the
// socket is made with the C library's own calls (socket, bind, listen). Its
// descriptor is handed to each worker as an inherited fd, so all of them share
// one accept queue, and a worker that dies or restarts loses no queued
// connection.
import { dlopen, FFIType, ptr, read } from "bun:ffi";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const BACKLOG = 511;

const ERRNO: Record<number, string> = { 13: "EACCES", 97: "EAFNOSUPPORT", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL" };

type Libc = ReturnType<typeof openLibc>;
let libc: Libc | undefined;

function openLibc() {
  const symbols = {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  } as const;
  return dlopen("libc.so.6", symbols).symbols;
}

/** A failed call, with the errno name the listeners' errors use (EADDRINUSE…). */
class SocketError extends Error {
  constructor(
    call: string,
    readonly errno: number,
  ) {
    const code = ERRNO[errno] ?? `errno ${errno}`;
    super(`${call}: ${code}`);
    this.code = code;
  }
  readonly code: string;
}

function check(c: Libc, call: string, result: number): number {
  if (result < 0) throw new SocketError(call, read.i32(c.__errno_location()!, 0));
  return result;
}

/** sockaddr_in or sockaddr_in6 for an address ("" = any) and port. */
function socketAddress(family: number, address: string, port: number): Uint8Array {
  const bytes = new Uint8Array(family === AF_INET ? 16 : 28);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, family, true);
  view.setUint16(2, port, false);
  if (family === AF_INET) {
    if (address) bytes.set(address.split(".").map(Number), 4);
  } else if (address) {
    bytes.set(ipv6Bytes(address), 8);
  }
  return bytes;
}

function ipv6Bytes(address: string): number[] {
  const [head, tail] = address.includes("::") ? address.split("::") : [address, undefined];
  const groups = (text: string | undefined) => (text ? text.split(":") : []);
  const left = groups(head);
  const right = groups(tail);
  const words = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return words.flatMap((word) => {
    const n = parseInt(word, 16);
    return [n >> 8, n & 0xff];
  });
}

export interface HeldSocket {
  fd: number;
  port: number;
}

function open(c: Libc, family: number, address: string, port: number): HeldSocket {
  const fd = check(c, "socket", c.socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  try {
    const one = new Int32Array([1]);
    check(c, "setsockopt", c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ptr(one), 4));
    // "All interfaces" is dual-stack, as the single-process listeners are.
    if (family === AF_INET6 && address === "") check(c, "setsockopt", c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, ptr(new Int32Array([0])), 4));
    const sockaddr = socketAddress(family, address, port);
    check(c, "bind", c.bind(fd, ptr(sockaddr), sockaddr.length));
    check(c, "listen", c.listen(fd, BACKLOG));
    const length = new Uint32Array([sockaddr.length]);
    check(c, "getsockname", c.getsockname(fd, ptr(sockaddr), ptr(length)));
    return { fd, port: new DataView(sockaddr.buffer).getUint16(2, false) };
  } catch (error) {
    c.close(fd);
    throw error;
  }
}

/**
 * Binds and listens on `port` (0: any free one) at `hostname` (undefined:
 * every interface, IPv6 and IPv4). Throws an error whose `code` is the errno
 * name, as Bun.listen does.
 */
export function holdListeningSocket(port: number, hostname: string | undefined): HeldSocket {
  const c = (libc ??= openLibc());
  if (hostname === undefined) {
    try {
      return open(c, AF_INET6, "", port);
    } catch (error) {
      if ((error as SocketError).code !== "EAFNOSUPPORT") throw error;
      return open(c, AF_INET, "", port);
    }
  }
  const address = hostname === "localhost" ? "127.0.0.1" : hostname;
  return open(c, address.includes(":") ? AF_INET6 : AF_INET, address, port);
}

export function releaseListeningSocket(fd: number) {
  (libc ??= openLibc()).close(fd);
}
