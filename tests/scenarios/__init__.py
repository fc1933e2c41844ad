"""Family journeys end to end through `hub up`, on the embedded broker and on Apache Kafka."""
