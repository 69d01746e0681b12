/** A small typed event emitter: `on` returns the function that removes the listener. */
export class Emitter<Events extends object> {
  #listeners = new Map<keyof Events, Set<(detail: never) => void>>();

  on<K extends keyof Events>(name: K, listener: (detail: Events[K]) => void): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    set.add(listener as (detail: never) => void);
    return () => this.off(name, listener);
  }

  off<K extends keyof Events>(name: K, listener: (detail: Events[K]) => void): void {
    this.#listeners.get(name)?.delete(listener as (detail: never) => void);
  }

  /** The next event `name` (that `match` accepts). */
  once<K extends keyof Events>(name: K, match: (detail: Events[K]) => boolean = () => true): Promise<Events[K]> {
    return new Promise((resolve) => {
      const off = this.on(name, (detail) => {
        if (!match(detail)) return;
        off();
        resolve(detail);
      });
    });
  }

  protected emit<K extends keyof Events>(name: K, detail: Events[K]): void {
    for (const listener of [...(this.#listeners.get(name) ?? [])]) {
      try {
        (listener as (detail: Events[K]) => void)(detail);
      } catch (error) {
        // One failing listener must not stop the room's own handling of the message.
        console.error(`parley: a ${String(name)} listener failed`, error);
      }
    }
  }
}
