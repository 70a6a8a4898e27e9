//! oxbow-operator: reconciles KafkaCluster and KafkaTopic resources (not built yet).
