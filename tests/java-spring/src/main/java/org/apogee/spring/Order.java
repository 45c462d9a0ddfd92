package org.apogee.spring;

/**
 * The scenarios' payload: RocketMQTemplate converts it to JSON on send, and a
 * {@code RocketMQListener<Order>} gets it back converted from JSON.
 *
 * @param id the order (the hash key of orderly sends)
 * @param step its step, 0 first
 * @param note free text (the tag it was sent with, or what a transaction should do)
 */
public record Order(String id, int step, String note) {
}
