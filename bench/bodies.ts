// What both backends (nginx and bench/backend.ts) answer, so that a check
// through any proxy can tell the backend's answer from an error page.
export const SMALL_PATH = "/small";
export const SMALL_BODY = "ok\n";
export const BIG_PATH = "/big";
export const BIG_BODY_BYTES = 1024 * 1024;
/** parachute's default health-check path. */
export const HEALTH_PATH = "/up";
