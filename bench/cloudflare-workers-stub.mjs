// Node stand-in for the `cloudflare:workers` module, for the CPU benchmark only: the
// benchmark measures the relay's own work per request, with the bindings answering at once.
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}
