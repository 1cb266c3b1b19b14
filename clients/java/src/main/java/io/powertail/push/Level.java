package io.powertail.push;

/** The level of a line, as PowerJob's {@code OmsLogger} has them. */
public enum Level {
    /** {@code OmsLogger.debug}. */
    DEBUG,
    /** {@code OmsLogger.info}. */
    INFO,
    /** {@code OmsLogger.warn}. */
    WARN,
    /** {@code OmsLogger.error}. */
    ERROR
}
