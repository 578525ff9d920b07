/**
 * The buffer between a run's producer (the scheduler's completions) and its consumer (a
 * `for await` loop): values come out in order, then the error if the run failed (once), then
 * the end. Both the LocalExecutor's runs and the SDK's cluster runs use it.
 */
import { Deque } from '../internal/deque';

type Waiter<T> = { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void };

export class OutputQueue<T> {
  private readonly values = new Deque<T>();
  private waiter: Waiter<T> | undefined;
  private error: Error | undefined;
  private errorDelivered = false;
  private ended = false;

  /**
   * @param onTake called after the consumer takes a value (a producer paused on a full buffer
   *   may go on).
   */
  constructor(private readonly onTake: () => void = () => undefined) {}

  /** Values waiting for the consumer. */
  get length(): number {
    return this.values.length;
  }

  /** Whether the producer side is over (ended or failed). */
  get closed(): boolean {
    return this.ended || this.error !== undefined;
  }

  push(value: T): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w.resolve({ value, done: false });
      this.onTake();
    } else {
      this.values.push(value);
    }
  }

  /** Fails the run: the consumer gets the values already pushed, then `err`. */
  fail(err: Error): void {
    if (this.closed) return;
    this.error = err;
    this.settleWaiter();
  }

  /** Ends the run: the consumer gets the values already pushed, then the end. */
  end(): void {
    if (this.closed) return;
    this.ended = true;
    this.settleWaiter();
  }

  next(): Promise<IteratorResult<T>> {
    const value = this.values.shift();
    if (value !== undefined) {
      this.onTake();
      return Promise.resolve({ value, done: false });
    }
    if (this.error !== undefined && !this.errorDelivered) {
      this.errorDelivered = true;
      return Promise.reject(this.error);
    }
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private settleWaiter(): void {
    const w = this.waiter;
    if (w === undefined || this.values.length > 0) return;
    this.waiter = undefined;
    if (this.error !== undefined) {
      this.errorDelivered = true;
      w.reject(this.error);
    } else {
      w.resolve({ value: undefined, done: true });
    }
  }
}
