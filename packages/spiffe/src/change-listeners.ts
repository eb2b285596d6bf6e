/**
 * Change notification shared by the sources and `BundleSet`: listeners are called in order, and
 * one that throws neither stops the others nor the change (its error is rethrown asynchronously,
 * where it surfaces as an uncaught exception, like an EventEmitter listener's would).
 */

/** Called when a source's value changes. */
export type ChangeListener = () => void;
/** Stops a subscription; calling it twice is harmless. */
export type Unsubscribe = () => void;

export class ChangeListeners {
  readonly #set = new Set<ChangeListener>();

  add(listener: ChangeListener): Unsubscribe {
    this.#set.add(listener);
    return () => {
      this.#set.delete(listener);
    };
  }

  emit(): void {
    for (const l of [...this.#set]) {
      try {
        l();
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  clear(): void {
    this.#set.clear();
  }
}
