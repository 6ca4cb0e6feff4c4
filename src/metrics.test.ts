import { expect, test } from "bun:test";
import { Metrics } from "./metrics.ts";

test("with workers, /metrics sums each worker's series under the same names", () => {
  const one = new Metrics();
  const two = new Metrics();
  one.recordRequest("app", "GET", 200, 0.004);
  one.recordRequest("app", "GET", 200, 0.2);
  two.recordRequest("app", "GET", 200, 0.004);
  two.recordRequest("app", "POST", 502, 1);
  const control = new Metrics();
  control.recordDeploy("app", true, 2);
  control.source = { inFlight: () => [], targetHealth: () => [{ service: "app", target: "a:1", state: "healthy" }], certificateExpiry: () => [] };
  const samples = [one, two].map((m, i) => ({ ...m.requestSamples(), inFlight: [{ service: "app", value: i + 1, paused: 1 }] }));
  const text = control.render(samples);
  expect(text).toContain('parachute_requests_total{service="app",method="GET",status="200"} 3');
  expect(text).toContain('parachute_requests_total{service="app",method="POST",status="502"} 1');
  expect(text).toContain('parachute_request_duration_seconds_bucket{service="app",method="GET",status="200",le="0.005"} 2');
  expect(text).toContain('parachute_request_duration_seconds_count{service="app",method="GET",status="200"} 3');
  expect(text).toContain('parachute_requests_in_flight{service="app"} 3');
  expect(text).toContain('parachute_requests_paused{service="app"} 2');
  expect(text).toContain('parachute_deploys_total{service="app",result="success"} 1');
  expect(text).toContain('parachute_target_healthy{service="app",target="a:1",state="healthy"} 1');
});
