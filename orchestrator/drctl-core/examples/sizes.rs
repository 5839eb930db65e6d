fn main() {
    use std::mem::size_of;
    println!("Node {}", size_of::<drctl_core::yaml::Node>());
    println!("RawDatastore {}", size_of::<drctl_core::topology::raw::RawDatastore>());
    println!("RawService {}", size_of::<drctl_core::topology::raw::RawService>());
    println!("RawMember {}", size_of::<drctl_core::topology::raw::RawMember>());
    println!("Entity {}", size_of::<drctl_core::topology::Entity>());
    println!("Step {}", size_of::<drctl_core::plan::Step>());
    println!("Task {}", size_of::<drctl_core::schedule::Task>());
}
