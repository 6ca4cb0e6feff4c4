// The services requests are routed from, by name, with their error pages and
// the router built from them. The registry and a worker's replica of it both
// are one.
import type { Routes } from "../data/pipeline.ts";
import type { CustomPages } from "../proxy/error-pages.ts";
import { Router } from "../routing/router.ts";
import type { Service } from "./service.ts";

export class ServiceTable implements Routes {
  router = new Router<Service>([]);
  protected readonly services = new Map<string, Service>();
  protected readonly pages = new Map<string, CustomPages>();

  service(name: string): Service | undefined {
    return this.services.get(name);
  }

  all(): Iterable<Service> {
    return this.services.values();
  }

  errorPages(service: Service): CustomPages | undefined {
    return this.pages.get(service.name);
  }
}
