// Type declarations of herald's JavaScript client (herald-client.js).

/** A topic's position: an epoch and an offset within it. */
export interface Position {
  epoch: string;
  offset: number;
}

/** A WebSocket constructor: the browser's, Node's, or a compatible one. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => any;

export interface ClientOptions {
  /** The WebSocket constructor. Default: globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols to offer, e.g. "herald.json.v1". Default: none. */
  protocols?: string | string[];
  /** The first reconnect's delay bound, in ms. Default 500. */
  minReconnectDelay?: number;
  /** The largest reconnect delay bound, in ms. Default 20000. */
  maxReconnectDelay?: number;
  /** How long a connection must stay open before backoff starts over, in ms. Default 5000. */
  stableAfter?: number;
  /** Send a ping after this long without sending, in ms; a welcome may change it. Default 25000. */
  ping?: number;
  /** Give up on the link when nothing arrived this long after a ping, in ms; a welcome may change it. Default 10000. */
  pong?: number;
  /** A random source in [0, 1) for the jitter. Default Math.random. */
  random?: () => number;
}

export declare const defaults: Readonly<Required<Pick<ClientOptions,
  'minReconnectDelay' | 'maxReconnectDelay' | 'stableAfter' | 'ping' | 'pong'>>>;

export interface ConnectingEvent { attempt: number }
export interface ConnectedEvent { url: string }
export interface DisconnectedEvent {
  /** The close code; 1006 for a lost connection or a dead link. */
  code: number;
  reason: string;
  willReconnect: boolean;
}
export interface SubscribedEvent {
  topic: string;
  /** True when every missed publication was recovered (and delivered). */
  recovered: boolean;
  /** True when the client subscribed from a position it held. */
  wasRecovering: boolean;
  /** The topic's position when the subscription took effect (absent without history). */
  epoch?: string;
  offset?: number;
}
export interface PublicationEvent {
  topic: string;
  /** The JSON value published, or its bytes when binary is true. */
  data: any;
  binary?: boolean;
  /** Absent for a topic without history. */
  offset?: number;
  epoch?: string;
}
/** The topic's history was lost: reload its state; the client continues from this position. */
export interface ResetEvent {
  topic: string;
  epoch?: string;
  offset?: number;
}
export interface UnsubscribedEvent { topic: string }
/** A message that is not the protocol's: the application's own. */
export interface AppMessageEvent { data: string | ArrayBuffer | object; json?: any }
export interface ClientErrorEvent {
  /** 'reply': an error reply; 'transport': the socket's error; 'handler': a listener threw. */
  type: 'reply' | 'transport' | 'handler';
  code?: string;
  message?: string;
  topic?: string;
  id?: number;
  /** For a subscribe's error reply: whether it is retried (unavailable, internal). */
  willRetry?: boolean;
  error?: unknown;
}

export interface ClientEvents {
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  subscribed: SubscribedEvent;
  publication: PublicationEvent;
  reset: ResetEvent;
  unsubscribed: UnsubscribedEvent;
  message: AppMessageEvent;
  error: ClientErrorEvent;
}

export interface SubscriptionEvents {
  subscribed: SubscribedEvent;
  publication: PublicationEvent;
  reset: ResetEvent;
  unsubscribed: UnsubscribedEvent;
  error: ClientErrorEvent;
}

declare class Emitter<E> {
  on<K extends keyof E>(event: K, fn: (ev: E[K]) => void): this;
  off<K extends keyof E>(event: K, fn: (ev: E[K]) => void): this;
  once<K extends keyof E>(event: K, fn: (ev: E[K]) => void): this;
}

export interface SubscribeOptions {
  onPublication?: (ev: PublicationEvent) => void;
  onSubscribed?: (ev: SubscribedEvent) => void;
  onReset?: (ev: ResetEvent) => void;
  onError?: (ev: ClientErrorEvent) => void;
  onUnsubscribed?: (ev: UnsubscribedEvent) => void;
  /** Start from a position the application kept. */
  since?: Position;
}

export declare class Subscription extends Emitter<SubscriptionEvents> {
  readonly client: Client;
  readonly topic: string;
  readonly state: 'subscribing' | 'subscribed' | 'unsubscribed' | 'failed';
  /** The last position processed, or null. */
  readonly position: Position | null;
  unsubscribe(): void;
}

export declare class Client extends Emitter<ClientEvents> {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: 'disconnected' | 'connecting' | 'connected';
  /** Open the connection and keep it open (reconnecting) until disconnect(). */
  connect(): this;
  /** Close the connection for good; subscriptions keep their positions. */
  disconnect(code?: number, reason?: string): this;
  /** Subscribe to a topic; throws if already subscribed to it. */
  subscribe(topic: string, options?: SubscribeOptions): Subscription;
  getSubscription(topic: string): Subscription | undefined;
  /** Send an application message; throws when not connected. */
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
}

/** Whether a client reconnects after a close with this code. */
export declare function reconnectAllowed(code: number): boolean;

/** The delay before reconnect attempt `attempt` (0-based): random in [0, min(max, min * 2^attempt)). */
export declare function backoffDelay(attempt: number, min: number, max: number, random: () => number): number;

export default Client;
