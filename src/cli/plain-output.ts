// Imported first by main.ts: citty decides on colours when it is loaded, from
// NO_COLOR and TERM only, so help piped into a file or another program would
// carry escape codes. Without a terminal on both outputs, ask for none.
if (!process.stdout.isTTY || !process.stderr.isTTY) process.env.NO_COLOR ??= "1";
