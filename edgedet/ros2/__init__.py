"""ROS 2 output: a node that publishes ``vision_msgs/Detection2DArray`` for each image.

Two ways to run, sharing the conversion code (`edgedet.ros2.convert`) and the node
(`edgedet.ros2.node`):

- with ``rclpy`` where ROS 2 is installed (`edgedet.ros2.rclpy_node`);
- without ROS: DDS topics in ROS 2's naming and CDR types through ``cyclonedds``
  (`edgedet.ros2.dds`) and/or rosbag2 files through ``rosbags`` (`edgedet.ros2.msgs`), both in the
  ``ros`` extra.

Command: ``edgedet ros2 MODEL ...`` or ``python -m edgedet.ros2 MODEL ...``; see docs/ros2.md.
Importing this package imports no ROS library.
"""
